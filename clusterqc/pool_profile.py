"""The pool's CLIP-score profile, read once from an assignments file and kept in the store.

Why: the card sets a cluster's scores beside the pool's distribution, and the sidebar sets the
subset so far beside what DataComp's CLIP-score baseline (the pool's top 30% by
`clip_l14_similarity_score`) would keep. Both need every sample's score, which only the
assignments file has; reading it per page view would cost seconds at pool scale. So
`clusterqc pool-profile` (or the Export page) reads it once: the pool size, the percentiles
0..100 of the score, the baseline's cut (the same rule as `export-uids --clip-top 0.3`), and
per cluster how many samples it has and how many pass that cut.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from clusterqc.manifest import file_sha256
from clusterqc.store import Store, utcnow
from clusterqc.subset import (
    BASELINE_TOP,
    SCORE_COLUMN,
    ScoreCut,
    SubsetError,
    _ClusterNames,
    _cluster_keys,
    chunk_scores,
    iter_chunks,
    score_cut,
)

PERCENTILES = np.arange(101)


def _counts(keys: Any) -> Counter[object]:
    counts = pc.value_counts(keys)
    return Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))


def read_pool_profile(
    store: Store, assignments: str | os.PathLike[str], column: str = SCORE_COLUMN, name: str | None = None,
    dataset: str | None = None,
) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    """(profile, per-cluster rows) from one pass over the keys and scores of the file.

    The file is the pool of one dataset's clustering (None: the only dataset)."""
    names = _ClusterNames(store.cluster_ids(store.resolve_dataset(dataset)))
    keys_parts, score_parts = [], []
    key_column = "cluster_id"
    try:
        for chunk in iter_chunks(assignments, column, need_uids=False):
            key_column = chunk.key_column
            keys_parts.append(_cluster_keys(chunk.keys, chunk.key_column, chunk.first_row))
            assert chunk.scores is not None
            score_parts.append(chunk_scores(chunk.scores, column, chunk.first_row))
    except SubsetError as exc:
        msg = str(exc)
        raise SubsetError(msg if msg.startswith(str(assignments)) else f"{assignments}: {msg}") from exc
    scores = np.concatenate(score_parts) if score_parts else np.empty(0)
    if scores.size == 0:
        raise SubsetError(f"{assignments}: no rows")
    cut = score_cut(scores, ScoreCut(top_fraction=BASELINE_TOP, column=column))
    sizes: Counter[object] = Counter()
    above: Counter[object] = Counter()
    for keys, part in zip(keys_parts, score_parts):
        sizes.update(_counts(keys))
        above.update(_counts(pc.filter(keys, part >= cut)))
    rows = [(names.name(k, key_column), int(n), int(above.get(k, 0))) for k, n in sizes.items()]
    profile = {
        "file": name or str(Path(assignments).resolve()),
        "sha256": file_sha256(assignments),
        "column": column,
        "samples": int(scores.size),
        "clusters": len(rows),
        "mean": float(scores.mean()),
        "percentiles": [float(x) for x in np.percentile(scores, PERCENTILES)],
        "baseline_top": BASELINE_TOP,
        "baseline_cut": cut,
        "baseline_samples": int(np.count_nonzero(scores >= cut)),
        "created_at": utcnow(),
    }
    return profile, rows


def record_pool_profile(
    store: Store, assignments: str | os.PathLike[str], column: str = SCORE_COLUMN, name: str | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Read the dataset's profile and store it (replacing its earlier one); returns the profile."""
    dataset = store.resolve_dataset(dataset)
    profile, rows = read_pool_profile(store, assignments, column, name, dataset)
    store.save_pool_profile(profile, rows, dataset)
    return profile


def record_pool_profile_from_upload(
    store: Store, name: str, data: bytes, column: str = SCORE_COLUMN, dataset: str | None = None
) -> dict[str, Any]:
    """`record_pool_profile` over uploaded bytes (the Export page); errors and the profile name the upload."""
    suffix = Path(name).suffix or ".csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"assignments{suffix}"
        path.write_bytes(data)
        try:
            return record_pool_profile(store, path, column, name=name, dataset=dataset)
        except SubsetError as exc:
            raise SubsetError(str(exc).replace(str(path), name)) from exc
