"""`clusterqc cluster POOL_DIR`: sample, train, assign every shard, write the outputs.

The order of work is what keeps memory bounded and failures clean:
1. open_pool checks every shard from metadata (nothing computed yet);
2. the sampling pass reads one shard at a time and keeps only its training rows
   (`--max-points-per-centroid` x k in all, in proportion to shard size, from --seed);
3. k-means on the sample (k-means++ seeds, faiss Lloyd), or the given centroids;
4. the assignment pass streams shards again; each shard's assignments go straight to a
   temporary Parquet file and its partial stats are merged and dropped;
5. the cluster file and centroids are written (temporary file, then rename), and the
   assignments file is renamed into place last. An error anywhere leaves no output behind.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clusterqc.clustering import ClusteringError
from clusterqc.pool import steps
from clusterqc.pool.kmeans import train
from clusterqc.pool.shards import Embedding, Pool, Shard, open_pool

DEFAULT_MAX_POINTS = 256
DEFAULT_NITER = 20
INIT_POINTS_PER_CENTROID = 32  # k-means++ runs on up to this many sample rows per centroid
KPP_TRIALS = 50  # greedy k-means++ candidates per seed (see kmeans.py for the measurements)


@dataclass(frozen=True)
class PoolResult:
    """What a run did, for the CLI line and the tests."""

    rows: int
    shards: int
    dim: int
    k: int
    clusters: dict[str, dict[str, Any]]
    centroids: np.ndarray
    inertia: float  # sum of squared distances over the whole pool
    sample_rows: int
    seconds: dict[str, float]


def _sample_task(item: tuple[Shard, int], fs: Any, embedding: Embedding, dim: int, seed: int) -> np.ndarray:
    shard, quota = item
    return steps.sample_step(fs, shard, embedding, dim, quota, seed)


def _assign_task(
    shard: Shard, fs: Any, embedding: Embedding, dim: int, centroids: np.ndarray, scores: tuple[str, ...]
) -> tuple[pa.Table, steps.Partial]:
    return steps.assign_step(fs, shard, embedding, dim, centroids, scores)


def training_sample(pool: Pool, engine: Any, k: int, max_points_per_centroid: int, seed: int) -> np.ndarray:
    """The sample k-means trains on: uniform over the pool, from every shard in proportion."""
    quotas = steps.sample_quotas([s.rows for s in pool.shards], k * max_points_per_centroid)
    x = np.empty((sum(quotas), pool.dim), dtype=np.float32)
    items = list(zip(pool.shards, quotas))
    at = 0
    for part in engine.map(_sample_task, items, pool.filesystem, pool.embedding, pool.dim, seed,
                           desc="sample", rows=[s.rows for s in pool.shards]):
        x[at : at + len(part)] = part
        at += len(part)
    return x


def load_centroids(path: str | os.PathLike[str], dim: int) -> np.ndarray:
    """k x dim float32 centroids from a .npy file (DataComp publishes them per scale)."""
    try:
        c = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ClusteringError(str(path), "--centroids-from", f"not a readable .npy file: {exc}") from None
    if c.ndim != 2 or c.shape[0] < 1:
        raise ClusteringError(str(path), "--centroids-from", f"expected k x {dim} centroids, got shape {c.shape}")
    if c.shape[1] != dim:
        raise ClusteringError(str(path), "--centroids-from", f"centroids have dimension {c.shape[1]}, the embedding has {dim}")
    if c.dtype.kind != "f" or not np.isfinite(c).all():
        raise ClusteringError(str(path), "--centroids-from", "centroids must be finite floats")
    return np.ascontiguousarray(c, dtype=np.float32)


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def cluster_pool(
    root: str | Pool,
    out_json: str | os.PathLike[str],
    k: int | None = None,
    embedding: str = "l14_txt",
    assignments: str | os.PathLike[str] | None = None,
    seed: int = 0,
    niter: int = DEFAULT_NITER,
    max_points_per_centroid: int = DEFAULT_MAX_POINTS,
    centroids_out: str | os.PathLike[str] | None = None,
    centroids_from: str | os.PathLike[str] | None = None,
    engine: Any = None,
    init: str = "k-means++",
    nredo: int = 1,
    say: Any = None,
) -> PoolResult:
    """Cluster a DataComp pool folder and write the cluster file (and assignments, centroids)."""
    from clusterqc.pool.engines.local import LocalEngine

    engine = engine if engine is not None else LocalEngine()
    say = say or (lambda _msg: None)
    seconds: dict[str, float] = {}
    pool = root if isinstance(root, Pool) else open_pool(root, Embedding.parse(embedding))
    root = pool.root
    if centroids_from is not None:
        centroids = load_centroids(centroids_from, pool.dim)
        if k is not None and k != len(centroids):
            raise ClusteringError(str(centroids_from), "--k", f"--k {k}, but the file holds {len(centroids)} centroids")
        k, sample_n, train_inertia = len(centroids), 0, float("nan")
    else:
        if k is None or k < 1:
            raise ClusteringError(root, "--k", f"k must be at least 1, got {k}")
        if k > pool.rows:
            raise ClusteringError(root, "--k", f"k={k} is more than the {pool.rows} samples in the pool")
        if max_points_per_centroid < 1:
            raise ClusteringError(root, "--max-points-per-centroid", "must be at least 1")
        t = time.perf_counter()
        sample = training_sample(pool, engine, k, max_points_per_centroid, seed)
        seconds["sample"] = time.perf_counter() - t
        sample_n = len(sample)
        say(f"training k-means: k={k} on {sample_n:,} sampled rows x {pool.dim}, {niter} iterations ({init})")
        t = time.perf_counter()
        centroids, train_inertia = train(
            sample, k, niter=niter, seed=seed, init=init, nredo=nredo,
            init_points=min(sample_n, INIT_POINTS_PER_CENTROID * k), trials=KPP_TRIALS,
        )
        del sample
        seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    clusters, inertia = _assign_and_write(pool, engine, centroids, Path(out_json),
                                          Path(assignments) if assignments else None,
                                          Path(centroids_out) if centroids_out else None)
    seconds["assign"] = time.perf_counter() - t
    return PoolResult(pool.rows, len(pool.shards), pool.dim, k, clusters, centroids, inertia, sample_n, seconds)


def _assign_and_write(
    pool: Pool, engine: Any, centroids: np.ndarray, out_json: Path, assignments: Path | None, centroids_out: Path | None
) -> tuple[dict[str, dict[str, Any]], float]:
    temps: list[Path] = []
    try:
        writer = None
        if assignments is not None:
            assignments.parent.mkdir(parents=True, exist_ok=True)
            temps.append(_tmp_beside(assignments))
        partial = steps.Partial.empty(len(centroids))
        inertia = 0.0
        shared = engine.put(centroids)
        for table, part in engine.map(_assign_task, list(pool.shards), pool.filesystem, pool.embedding, pool.dim,
                                      shared, pool.scores, desc="assign", rows=[s.rows for s in pool.shards]):
            inertia += float(np.sum(table.column("distance").to_numpy(), dtype=np.float64))
            if assignments is not None:
                if writer is None:
                    writer = pq.ParquetWriter(temps[0], table.schema)
                writer.write_table(table)
            partial = steps.merge(partial, part)
            del table, part
        if writer is not None:
            writer.close()
        clusters = steps.cluster_records(partial, pool.rows)
        text = json.dumps(clusters, ensure_ascii=False, indent=2) + "\n"
        out_json.parent.mkdir(parents=True, exist_ok=True)
        json_tmp = _tmp_beside(out_json)
        temps.append(json_tmp)
        json_tmp.write_text(text, encoding="utf-8")
        if centroids_out is not None:
            centroids_out.parent.mkdir(parents=True, exist_ok=True)
            c_tmp = _tmp_beside(centroids_out)
            temps.append(c_tmp)
            with c_tmp.open("wb") as fh:
                np.save(fh, centroids, allow_pickle=False)
        # Everything is complete on disk; only renames are left.
        if centroids_out is not None:
            os.replace(temps[-1], centroids_out)
        os.replace(json_tmp, out_json)
        if assignments is not None:
            os.replace(temps[0], assignments)
        return clusters, inertia
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
