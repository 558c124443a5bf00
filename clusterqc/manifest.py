"""The manifest written beside a uid subset: what it was built from, so a training run can be traced.

`subset.npy` gets `subset.json`: the dataset(s), the assignments file and its sha256, the
embedding and k, the judges and prompt versions behind the labels, the decisions counted, the
filters (verdicts kept, score cut), the counts and the time. A subset file alone says nothing
of how it was made; weeks later, this is what tells two candidate subsets apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from clusterqc import __version__
from clusterqc.export import ExportError, export_frame, write_atomic
from clusterqc.store import Store, utcnow
from clusterqc.subset import ScoreCut, SubsetError, SubsetResult, build_subset

EMBEDDING_SETTING = "embedding"  # set by whoever clustered the pool (e.g. "clip_l14_img")
HASH_BLOCK = 8 << 20


def manifest_path(out: str | os.PathLike[str]) -> Path:
    """`subset.npy` -> `subset.json` (the same folder, the same stem)."""
    out = Path(out)
    path = out.with_suffix(".json")
    if path == out:
        raise SubsetError(f"{out}: the subset file cannot end in .json (its manifest is written there)")
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in blocks (an assignments file can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _text(value: Any) -> str | None:
    """A frame cell as a plain str, or None for pandas' missing values (not JSON-serialisable)."""
    return None if value is None or pd.isna(value) else str(value)


def _decisions(frame: Any, kept: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the labels rest on: decisions counted and the judge/prompt versions of the kept clusters."""
    reviewed = frame[frame["label_source"] == "reviewed"]
    reviewers = sorted({r for names in reviewed["reviewers"] for r in names})
    decisions = {
        "reviewed_clusters": int(len(reviewed)),
        "model_only_clusters": int(len(frame) - len(reviewed)),
        "standing_decisions": int(reviewed["n_reviews"].sum()),
        "reviewers": reviewers,
        "last_decided_at": None if reviewed.empty else _text(reviewed["decided_at"].max()),
    }
    # Per kept cluster, the model answer the export pairs with its label: the label itself for a
    # model-only cluster, the answer beside the reviewers' decisions otherwise.
    used: Counter[tuple[str, str, str]] = Counter()
    for row in frame.itertuples(index=False):
        judge = _text(row.judge)
        if judge is not None and row.cluster_id in kept:
            role = "label" if row.label_source == "model_only" else "beside reviews"
            used[(judge, _text(row.prompt_version) or "", role)] += 1
    judges = [
        {"judge": j, "prompt_version": v, "role": role, "kept_clusters": n}
        for (j, v, role), n in sorted(used.items())
    ]
    return decisions, judges


def subset_manifest(
    store: Store,
    result: SubsetResult,
    assignments: str | os.PathLike[str],
    out: str | os.PathLike[str],
    keep: Iterable[str],
    include_unreviewed: bool,
    sha256: str | None = None,
    assignments_name: str | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """The manifest's fields as a dict (JSON-ready). `sha256` is computed when not given.

    The subset is of one dataset (None: the only one), as the assignments are."""
    dataset = store.resolve_dataset(dataset)
    frame = export_frame(store, include_unreviewed, dataset=dataset)
    decisions, judges = _decisions(frame, set(result.kept_cluster_ids))
    cut = result.cut
    total = result.total_samples
    return {
        "subset": Path(out).name,
        "format": "numpy .npy, dtype u8,u8 (first 16 hex digits of the uid, last 16), sorted",
        "dataset": dataset,
        "assignments": {
            "file": assignments_name or str(Path(assignments).resolve()),
            "sha256": sha256 or file_sha256(assignments),
            "bytes": Path(assignments).stat().st_size,
            "rows": total,
        },
        "embedding": store.get_setting(EMBEDDING_SETTING),
        "k": result.kept_clusters + result.dropped_clusters,
        "judges": judges,
        "decisions": decisions,
        "filters": {
            "keep": sorted(set(keep)),
            "include_unreviewed": bool(include_unreviewed),
            "clip_min": None if cut is None else cut.clip_min,
            "clip_top": None if cut is None else cut.top_fraction,
            "score_column": None if cut is None else cut.column,
            "cut_score": result.cut_value,
        },
        "counts": {
            "kept_clusters": result.kept_clusters,
            "dropped_clusters": result.dropped_clusters,
            "unlabelled_clusters": result.unlabelled_clusters,
            "unknown_clusters": result.unknown_clusters,
            "kept_samples": result.kept_samples,
            "pool_samples": total,
            "share_of_pool": result.kept_fraction,
            "cut_alone_samples": result.cut_alone_samples,
            "cut_alone_share": result.cut_alone_fraction,
        },
        "created_at": utcnow(),
        "clusterqc_version": __version__,
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n").encode("utf-8")


def write_manifest(manifest: dict[str, Any] | bytes, path: str | os.PathLike[str]) -> None:
    """Written to a temporary name and renamed, like the subset itself."""
    try:
        write_atomic(path, manifest if isinstance(manifest, bytes) else manifest_bytes(manifest))
    except ExportError as exc:
        raise SubsetError(str(exc)) from None


def subset_from_upload(
    store: Store, name: str, data: bytes, keep: Iterable[str], include_unreviewed: bool = False,
    cut: ScoreCut | None = None, dataset: str | None = None,
) -> tuple[SubsetResult, dict[str, Any]]:
    """The Export page's subset and its manifest from uploaded bytes; errors name the upload.

    The readers stream from a path, so the bytes go to a temporary file with the upload's
    extension first; the manifest names the upload and hashes its bytes.
    """
    suffix = Path(name).suffix or ".csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"assignments{suffix}"
        path.write_bytes(data)
        try:
            result = build_subset(store, path, keep, include_unreviewed, cut=cut, dataset=dataset)
            manifest = subset_manifest(store, result, path, "subset.npy", keep, include_unreviewed,
                                       sha256=hashlib.sha256(data).hexdigest(), assignments_name=name,
                                       dataset=dataset)
        except SubsetError as exc:
            raise SubsetError(str(exc).replace(str(path), name)) from exc
    return result, manifest
