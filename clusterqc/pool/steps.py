"""The per-shard steps both engines run: read, select the embedding, sample, assign, aggregate, merge.

Each is a plain function of plain, picklable values (a pyarrow filesystem, a Shard, numpy
arrays), so the local engine calls them in a loop and the Ray engine ships the very same
functions as tasks: the results cannot differ by engine (datatrove's split of pipeline steps
and executors). Partials merge associatively and exactly:
- sizes and score sums add;
- each cluster's closest and furthest members are chosen by a total order, (distance, global
  row) ascending for closest and (-distance, global row) for furthest, so the top 5 of the
  shards' top-5 lists is the top 5 of the whole pool, whatever the order the shards come in;
- quartiles need every score of a cluster, so a partial carries its shard's L/14 scores as
  float32, grouped by cluster: 4 bytes per sample, the one thing that grows with the pool
  (51 MB for DataComp-small's 12.8M rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clusterqc.pool.kmeans import nearest
from clusterqc.pool.shards import SCORE_COLUMNS, UID_COLUMN, Embedding, Shard, read_arrays

N_SHOWN = 5
L14, B32 = SCORE_COLUMNS
SAMPLE_COLUMNS = ("cluster", "distance", "row", "uid", "url", "text", L14, B32)


def cluster_name(n: int) -> str:
    return f"Cluster_{n}"


# --------------------------------------------------------------------------- reading


def read_embedding(fs: Any, shard: Shard, embedding: Embedding, dim: int | None = None) -> np.ndarray:
    """The shard's vectors as one float32 matrix (parts concatenated in the order named)."""
    try:
        parts = read_arrays(fs, shard.npz, embedding.parts)
    except (KeyError, ValueError, OSError, EOFError, pa.ArrowException) as exc:
        raise shard.fail("npz", f"cannot read {embedding}: {exc}") from None
    x = parts[0].astype(np.float32) if len(parts) == 1 else np.concatenate(parts, axis=1, dtype=np.float32)
    if x.shape[0] != shard.rows or (dim is not None and x.shape[1] != dim):
        raise shard.fail("npz", f"{embedding} is {x.shape[0]} x {x.shape[1]}, expected {shard.rows} x {dim}")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise shard.fail(f"npz {embedding} row {bad + 1}", "not a finite number")
    return x


def read_metadata(fs: Any, shard: Shard, scores: tuple[str, ...]) -> pa.Table:
    """uid, url, text and the pool's score columns of a shard (missing ones as nulls)."""
    columns = [UID_COLUMN, *shard.text_columns, *(c for c in scores if c in shard.scores)]
    try:
        table = pq.read_table(shard.parquet, filesystem=fs, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise shard.fail("parquet", f"cannot read: {exc}") from None
    if table.num_rows != shard.rows:
        raise shard.fail("parquet", f"{table.num_rows} rows, expected {shard.rows}")
    out = {UID_COLUMN: _as_string(shard, table.column(UID_COLUMN), UID_COLUMN)}
    for name in ("url", "text"):
        out[name] = _as_string(shard, table.column(name), name) if name in table.column_names else pa.nulls(shard.rows, pa.string())
    for name in scores:
        out[name] = (
            table.column(name).combine_chunks().cast(pa.float64())
            if name in table.column_names
            else pa.nulls(shard.rows, pa.float64())
        )
    uids = out[UID_COLUMN]
    if uids.null_count:
        bad = int(np.flatnonzero(uids.is_null().to_numpy(zero_copy_only=False))[0])
        raise shard.fail(f"parquet row {bad + 1}", "the uid is missing")
    return pa.table(out)


def _as_string(shard: Shard, column: Any, name: str) -> pa.Array:
    try:
        return column.combine_chunks().cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise shard.fail(f"parquet column {name}", f"not text: {exc}") from None


# --------------------------------------------------------------------------- training sample


def sample_quotas(rows: list[int], total: int) -> list[int]:
    """How many training rows each shard gives: proportional to its size, summing to `total`.

    Largest remainder (ties to the earlier shard), so the sample is uniform over the pool and
    its size exact.
    """
    n = sum(rows)
    total = min(total, n)
    exact = [r * total / n for r in rows]
    quotas = [int(e) for e in exact]
    order = sorted(range(len(rows)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def sample_rows(shard: Shard, quota: int, seed: int) -> np.ndarray:
    """The shard's training rows: `quota` of them without replacement, from (seed, shard index)."""
    rng = np.random.default_rng([seed, shard.index])
    return np.sort(rng.choice(shard.rows, size=quota, replace=False))


def sample_step(fs: Any, shard: Shard, embedding: Embedding, dim: int, quota: int, seed: int) -> np.ndarray:
    """quota x dim float32: the shard's share of the training sample."""
    if quota == 0:
        return np.empty((0, dim), dtype=np.float32)
    x = read_embedding(fs, shard, embedding, dim)
    return np.ascontiguousarray(x[sample_rows(shard, quota, seed)])


# --------------------------------------------------------------------------- partial stats


@dataclass
class Partial:
    """What a set of shards contributes to the per-cluster outputs; merge() adds two of them."""

    counts: np.ndarray  # int64[k]: members
    score_sums: np.ndarray  # float64[k]: sum of L/14 scores
    score_counts: np.ndarray  # int64[k]: members with an L/14 score
    score_chunks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (float32 grouped, int64[k])
    closest: pa.Table | None = None  # SAMPLE_COLUMNS, top N_SHOWN per cluster
    furthest: pa.Table | None = None

    @classmethod
    def empty(cls, k: int) -> "Partial":
        return cls(np.zeros(k, np.int64), np.zeros(k, np.float64), np.zeros(k, np.int64))


def _top(cluster: np.ndarray, key: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first n per cluster in (cluster, key, row) order."""
    order = np.lexsort((row, key, cluster))
    sorted_clusters = cluster[order]
    starts = np.flatnonzero(np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < n]


def _extremes(samples: pa.Table, n: int = N_SHOWN) -> tuple[pa.Table, pa.Table]:
    """(closest, furthest) n per cluster of a table of candidate samples."""
    cluster = samples.column("cluster").to_numpy()
    distance = samples.column("distance").to_numpy()
    row = samples.column("row").to_numpy()
    closest = samples.take(_top(cluster, distance, row, n))
    furthest = samples.take(_top(cluster, -distance, row, n))
    return closest, furthest


def aggregate(
    shard: Shard, meta: pa.Table, labels: np.ndarray, distances: np.ndarray, k: int
) -> Partial:
    """One shard's partial: sizes, L/14 score sums and values, and its closest/furthest candidates."""
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    partial = Partial(counts, np.zeros(k, np.float64), np.zeros(k, np.int64))
    if L14 in meta.column_names:
        scores = meta.column(L14).to_numpy(zero_copy_only=False)
        ok = ~np.isnan(scores)
        partial.score_sums = np.bincount(labels[ok], weights=scores[ok], minlength=k)
        partial.score_counts = np.bincount(labels[ok], minlength=k).astype(np.int64)
        order = np.argsort(labels[ok], kind="stable")
        partial.score_chunks = [(scores[ok][order].astype(np.float32), partial.score_counts.copy())]
    rows = np.arange(shard.rows, dtype=np.int64) + shard.offset
    index = np.union1d(_top(labels, distances, rows, N_SHOWN), _top(labels, -distances, rows, N_SHOWN))
    candidates = {
        "cluster": pa.array(labels[index], pa.int32()),
        "distance": pa.array(distances[index], pa.float32()),
        "row": pa.array(rows[index], pa.int64()),
    }
    taken = meta.take(pa.array(index))
    for name in ("uid", "url", "text"):
        candidates[name] = taken.column(name)
    for name in (L14, B32):
        candidates[name] = taken.column(name) if name in taken.column_names else pa.nulls(len(index), pa.float64())
    partial.closest, partial.furthest = _extremes(pa.table(candidates))
    return partial


def merge(a: Partial, b: Partial) -> Partial:
    """a + b: the partial of both sets of shards (exact, order-independent)."""
    tables = [t for t in (a.closest, a.furthest, b.closest, b.furthest) if t is not None]
    out = Partial(
        a.counts + b.counts,
        a.score_sums + b.score_sums,
        a.score_counts + b.score_counts,
        a.score_chunks + b.score_chunks,
    )
    if tables:
        closest, _ = _extremes(pa.concat_tables([t for t in (a.closest, b.closest) if t is not None]))
        _, furthest = _extremes(pa.concat_tables([t for t in (a.furthest, b.furthest) if t is not None]))
        out.closest, out.furthest = closest, furthest
    return out


# --------------------------------------------------------------------------- the assignment pass


def assignment_table(meta: pa.Table, labels: np.ndarray, distances: np.ndarray, names: pa.Array) -> pa.Table:
    """uid, cluster_id (Cluster_<n>, dictionary-encoded), distance, and the pool's score columns."""
    columns: dict[str, Any] = {
        "uid": meta.column(UID_COLUMN),
        "cluster_id": pa.DictionaryArray.from_arrays(pa.array(labels, pa.int32()), names),
        "distance": pa.array(distances, pa.float32()),
    }
    for name in SCORE_COLUMNS:
        if name in meta.column_names:
            columns[name] = meta.column(name)
    return pa.table(columns)


def assign_step(
    fs: Any, shard: Shard, embedding: Embedding, dim: int, centroids: np.ndarray, scores: tuple[str, ...]
) -> tuple[pa.Table, Partial]:
    """Read one shard, assign every row to its nearest centroid, and aggregate it."""
    x = read_embedding(fs, shard, embedding, dim)
    meta = read_metadata(fs, shard, scores)
    labels, distances = nearest(x, centroids)
    del x
    k = len(centroids)
    names = pa.array([cluster_name(n) for n in range(k)], pa.string())
    return assignment_table(meta, labels, distances, names), aggregate(shard, meta, labels, distances, k)


# --------------------------------------------------------------------------- the cluster file


def _score(value: Any) -> float | None:
    return None if value is None else float(value)


def _samples(table: pa.Table) -> dict[int, list[dict[str, Any]]]:
    """Cluster number -> its samples as cluster-file objects, in the table's order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for r in table.to_pylist():
        out.setdefault(r["cluster"], []).append(
            {
                "uid": r["uid"],
                "url": r["url"],
                "text": r["text"] if r["text"] is not None else "",
                "clip_score": _score(r[L14]),
                "clip_b32_score": _score(r[B32]),
                "distance": float(r["distance"]),
            }
        )
    return out


def cluster_records(partial: Partial, total_rows: int) -> dict[str, dict[str, Any]]:
    """The luvdatacomp-format cluster file, with a `stats` object per cluster.

    Quartiles are numpy's default (linear interpolation) over the float32 scores; the mean is
    over the scores as stored (float64).
    """
    k = len(partial.counts)
    grouped = _grouped_scores(partial, k)
    closest = _samples(partial.closest) if partial.closest is not None else {}
    furthest = _samples(partial.furthest) if partial.furthest is not None else {}
    out: dict[str, dict[str, Any]] = {}
    for n in range(k):
        size = int(partial.counts[n])
        if size == 0:
            continue  # an empty cluster has nothing to review
        stats: dict[str, Any] = {"size": size, "share": size / total_rows}
        values = grouped[n] if grouped is not None else None
        if values is not None and len(values):
            q1, median, q3 = np.quantile(values.astype(np.float64), [0.25, 0.5, 0.75])
            stats.update(
                clip_l14_mean=float(partial.score_sums[n] / partial.score_counts[n]),
                clip_l14_q1=float(q1), clip_l14_median=float(median), clip_l14_q3=float(q3),
            )
        else:
            stats.update(clip_l14_mean=None, clip_l14_q1=None, clip_l14_median=None, clip_l14_q3=None)
        out[cluster_name(n)] = {
            "closest_samples": closest[n],
            "furthest_samples": furthest[n],
            "size": size,
            "stats": stats,
        }
    return out


def _grouped_scores(partial: Partial, k: int) -> list[np.ndarray] | None:
    """Per cluster, all its L/14 scores (from every shard's grouped chunk); None without scores."""
    if not partial.score_chunks:
        return None
    total = partial.score_counts
    starts = np.r_[0, np.cumsum(total)[:-1]]
    values = np.empty(int(total.sum()), dtype=np.float32)
    filled = np.zeros(k, dtype=np.int64)
    for chunk, counts in partial.score_chunks:
        chunk_starts = np.r_[0, np.cumsum(counts)[:-1]]
        owner = np.repeat(np.arange(k), counts)
        rank = np.arange(len(chunk)) - chunk_starts[owner]
        values[starts[owner] + filled[owner] + rank] = chunk
        filled += counts
    partial.score_chunks = [(values, total.copy())]
    return [values[s : s + c] for s, c in zip(starts, total)]
