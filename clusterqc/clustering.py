"""Per-sample embeddings -> a luvdatacomp-format cluster file: the step before review.

Why it looks the way it does:
- k-means is faiss-cpu's (`faiss.Kmeans`), the usual tool for CLIP embeddings at pool scale;
  a fixed seed makes the result reproducible, so the committed demo can be regenerated.
- The output is exactly the file the luvdatacomp pipeline writes (`{"Cluster_<n>":
  {"closest_samples": [...], "furthest_samples": [...]}}`, plus `size`), with samples as
  `{"text", "uid"}` objects so a later export can map verdicts back to DataComp uids; the
  assignments file mirrors that pipeline's `cluster_labels.csv` (`uid,data_points,cluster_label`).
- Closest are ordered nearest first; furthest are ordered furthest first. Distances are squared
  L2 to the final centroid, ties broken by input order.
- Outputs are written to a temporary file and renamed, so a failure leaves no half file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterqc.ingest import IngestError

N_SHOWN = 5


class ClusteringError(IngestError):
    """A problem with the embeddings input or the clustering request (file, where, why)."""


@dataclass(frozen=True)
class ClusteringResult:
    """What a run produced; `centroids` and `distances` let tests re-check the ordering."""

    ids: list[str]
    labels: np.ndarray  # cluster number per input row
    distances: np.ndarray  # squared L2 distance of each row to its centroid
    centroids: np.ndarray  # k x d
    clusters: dict[str, dict[str, Any]]  # what was written to out_json

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


# --------------------------------------------------------------------------- reading


def _read_jsonl(path: Path, id_col: str, text_col: str, emb_col: str) -> tuple[list[str], list[str], np.ndarray]:
    file = str(path)
    ids: list[str] = []
    texts: list[str] = []
    rows: list[list[float]] = []
    dim: int | None = None
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ClusteringError(file, "file", f"cannot read: {exc.strerror or exc}") from None
    with fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"line {n}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ClusteringError(file, where, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
            except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                raise ClusteringError(file, where, f"malformed JSON: {getattr(exc, 'msg', exc)}") from None
            if not isinstance(record, dict):
                raise ClusteringError(file, where, "expected one JSON object per line")
            for col in (id_col, text_col, emb_col):
                if col not in record:
                    raise ClusteringError(file, where, f"missing column {col!r}; the line has {', '.join(record)}")
            ids.append(_id(file, where, record[id_col], id_col))
            texts.append(_text(file, where, record[text_col], text_col))
            vec = _vector(file, where, record[emb_col], emb_col)
            if dim is None:
                dim = len(vec)
            elif len(vec) != dim:
                raise ClusteringError(
                    file, where, f"{emb_col} has {len(vec)} values, earlier lines have {dim}"
                )
            rows.append(vec)
    if not rows:
        raise ClusteringError(file, "line 1", "no samples in file")
    return ids, texts, np.asarray(rows, dtype="float32")


def _read_parquet(path: Path, id_col: str, text_col: str, emb_col: str) -> tuple[list[str], list[str], np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = str(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ClusteringError(file, "file", f"not a readable Parquet file: {exc}") from None
    for col in (id_col, text_col, emb_col):
        if col not in table.column_names:
            raise ClusteringError(file, "schema", f"missing column {col!r}; it has {', '.join(table.column_names)}")
    ids_raw = table.column(id_col).to_pylist()
    texts_raw = table.column(text_col).to_pylist()
    ids = [_id(file, f"row {i + 1}", v, id_col) for i, v in enumerate(ids_raw)]
    texts = [_text(file, f"row {i + 1}", v, text_col) for i, v in enumerate(texts_raw)]
    fast = _arrow_matrix(table.column(emb_col))
    if fast is not None:
        if len(fast) == 0:
            raise ClusteringError(file, "row 1", "no samples in file")
        return ids, texts, fast
    vectors = table.column(emb_col).to_pylist()  # ragged, null or odd types: check row by row
    dim = None
    for i, vec in enumerate(vectors):
        vec = _vector(file, f"row {i + 1}", vec, emb_col)
        if dim is None:
            dim = len(vec)
        elif len(vec) != dim:
            raise ClusteringError(file, f"row {i + 1}", f"{emb_col} has {len(vec)} values, earlier rows have {dim}")
    if not vectors:
        raise ClusteringError(file, "row 1", "no samples in file")
    return ids, texts, np.asarray(vectors, dtype="float32")


def _arrow_matrix(column: Any) -> np.ndarray | None:
    """n x d float32 straight from an Arrow list column when every row is a full, finite vector.

    Pool-scale Parquet (millions of 768-d rows) would take minutes and gigabytes as Python
    lists; None sends anything unusual to the row-by-row path, which names the bad row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        return None
    if not (pa.types.is_floating(arr.type.value_type) or pa.types.is_integer(arr.type.value_type)):
        return None
    if len(arr) == 0:
        return np.zeros((0, 0), dtype="float32")
    if arr.null_count:
        return None
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max() or lengths[0] == 0:
        return None
    values = pc.list_flatten(arr)
    if values.null_count:
        return None
    x = values.to_numpy(zero_copy_only=False).astype("float32", copy=False).reshape(len(arr), int(lengths[0]))
    return x if np.isfinite(x).all() else None


def _id(file: str, where: str, value: Any, col: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ClusteringError(file, where, f"{col} must be a non-empty string or integer, got {value!r:.40}")
    return str(value)


def _text(file: str, where: str, value: Any, col: str) -> str:
    if not isinstance(value, str):
        raise ClusteringError(file, where, f"{col} must be a string, got {value!r:.40}")
    return value


def _vector(file: str, where: str, value: Any, col: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise ClusteringError(file, where, f"{col} must be a non-empty list of numbers, got {value!r:.40}")
    for x in value:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ClusteringError(file, where, f"{col} must hold finite numbers, found {x!r:.40}")
    return value


def read_embeddings(
    input_path: str | os.PathLike[str], id_col: str, text_col: str, emb_col: str
) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, texts, n x d float32 matrix) from JSONL or Parquet; duplicate ids are an error."""
    path = Path(input_path)
    if not path.is_file():
        raise ClusteringError(str(path), "file", "no such file")
    with path.open("rb") as fh:
        head = fh.read(4)
    if path.suffix.lower() in (".parquet", ".pq") or head == b"PAR1":
        ids, texts, x = _read_parquet(path, id_col, text_col, emb_col)
    else:
        ids, texts, x = _read_jsonl(path, id_col, text_col, emb_col)
    seen: dict[str, int] = {}
    for i, uid in enumerate(ids):
        if uid in seen:
            raise ClusteringError(str(path), f"sample {i + 1}", f"duplicate {id_col} {uid!r} (first at sample {seen[uid] + 1})")
        seen[uid] = i
    return ids, texts, x


# --------------------------------------------------------------------------- clustering


def kmeans(x: np.ndarray, k: int, seed: int = 0, niter: int = 25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroids, label per row, squared distance per row) with faiss; deterministic per seed."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(x)
    distances, labels = km.index.search(x, 1)
    return km.centroids.copy(), labels[:, 0].astype(np.int64), distances[:, 0].astype(np.float64)


def summarise(
    ids: list[str], texts: list[str], labels: np.ndarray, distances: np.ndarray, k: int
) -> dict[str, dict[str, Any]]:
    """luvdatacomp-format clusters: 5 closest (nearest first), 5 furthest (furthest first), size."""
    order = np.lexsort((np.arange(len(labels)), distances, labels))  # by label, distance, row
    sorted_labels = labels[order]
    bounds = np.searchsorted(sorted_labels, np.arange(k + 1))
    out: dict[str, dict[str, Any]] = {}
    for n in range(k):
        members = order[bounds[n] : bounds[n + 1]]
        if len(members) == 0:
            continue  # an empty cluster has nothing to review
        sample = lambda i: {"text": texts[i], "uid": ids[i]}  # noqa: E731
        out[f"Cluster_{n}"] = {
            "closest_samples": [sample(i) for i in members[:N_SHOWN]],
            "furthest_samples": [sample(i) for i in members[::-1][:N_SHOWN]],
            "size": int(len(members)),
        }
    return out


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_assignments(path: Path, ids: list[str], texts: list[str], labels: np.ndarray) -> None:
    """`uid,data_points,cluster_label` like the pipeline's cluster_labels.csv; Parquet by extension."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"uid": ids, "data_points": texts, "cluster_label": pa.array(labels, pa.int64())})
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["uid", "data_points", "cluster_label"])
            w.writerows(zip(ids, texts, labels.tolist()))

    _atomic_write(path, write_csv)


def cluster_embeddings(
    input_path: str | os.PathLike[str],
    k: int,
    id_col: str,
    text_col: str,
    emb_col: str,
    out_json: str | os.PathLike[str],
    out_assignments: str | os.PathLike[str] | None,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> ClusteringResult:
    """Cluster the input's embeddings into k clusters and write the cluster file and assignments.

    `on_stage(text)` names each long step as it starts (the CLI's progress line).
    """
    say = on_stage or (lambda _text: None)
    say(f"reading {input_path}")
    ids, texts, x = read_embeddings(input_path, id_col, text_col, emb_col)
    if k < 1:
        raise ClusteringError(str(input_path), "--k", f"k must be at least 1, got {k}")
    if k > len(ids):
        raise ClusteringError(str(input_path), "--k", f"k={k} is more than the {len(ids)} samples in the file")
    say(f"k-means, {k:,} clusters over {x.shape[0]:,} samples of {x.shape[1]} dimensions")
    centroids, labels, distances = kmeans(x, k, seed=seed)
    say(f"writing {out_json}" + (f" and {out_assignments}" if out_assignments is not None else ""))
    clusters = summarise(ids, texts, labels, distances, k)
    out = Path(out_json)
    _atomic_write(
        out, lambda tmp: tmp.write_text(json.dumps(clusters, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    )
    if out_assignments is not None:
        write_assignments(Path(out_assignments), ids, texts, labels)
    return ClusteringResult(ids, labels, distances, centroids, clusters)
