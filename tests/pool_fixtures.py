"""Synthetic DataComp pools in the download's own layout, with planted clusters.

Used by the tests (tiny pools) and by bench/bench_cluster.py (400,000+ rows). Each shard is
`<stem>.parquet` with DataComp's metadata columns (uid, url, text, original_width,
original_height, clip_b32_similarity_score, clip_l14_similarity_score, face_bboxes, sha256)
and `<stem>.npz` with float16 `l14_img, l14_txt` (l14_dim) and `b32_img, b32_txt` (b32_dim),
one row per parquet row. Clusters are planted in two levels (groups of nearby centres), so
that a bad initialisation can merge neighbours: the situation that separates k-means variants.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ALL_ARRAYS = ("l14_img", "l14_txt", "b32_img", "b32_txt")


@dataclass(frozen=True)
class PlantedPool:
    """What was written: shard stems in order, every uid, and its planted cluster."""

    root: Path
    stems: list[str]
    uids: list[str]
    planted: np.ndarray  # planted cluster per row, pool order
    rows_per_shard: list[int]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write_pool(
    root: str | Path,
    rows_per_shard: list[int],
    k: int,
    l14_dim: int = 768,
    b32_dim: int = 512,
    seed: int = 0,
    arrays: tuple[str, ...] = ALL_ARRAYS,
    group_size: int = 5,
    spread: float = 0.6,
    noise: float = 0.9,
    compressed: bool = False,
    weights_sigma: float = 0.5,
) -> PlantedPool:
    """Write a pool with `k` planted clusters (sizes log-normally uneven); returns the truth.

    A sample's vector = unit(centre + noise * N(0, I/d)); a centre = unit(group centre +
    spread * N(0, I/d)). l14_* and b32_* share the cluster structure in their own dimension.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_groups = max(1, -(-k // group_size))
    centres = {}
    for name, dim in (("l14", l14_dim), ("b32", b32_dim)):
        groups = _unit(rng.standard_normal((n_groups, dim)))
        own = groups[np.arange(k) // group_size] + spread * rng.standard_normal((k, dim)) / np.sqrt(dim)
        centres[name] = _unit(own)
    weights = rng.lognormal(0.0, weights_sigma, k)
    weights /= weights.sum()
    score_mean = rng.uniform(0.15, 0.4, k)
    stems, uids, planted = [], [], []
    row = 0
    for s, n in enumerate(rows_per_shard):
        stem = f"{s:08d}"
        labels = rng.choice(k, size=n, p=weights)
        shard_uids = [rng.bytes(16).hex() for _ in range(n)]
        npz = {}
        for name in arrays:
            family = name[:3]
            dim = l14_dim if family == "l14" else b32_dim
            x = centres[family][labels] + noise * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
            npz[name] = _unit(x).astype(np.float16)
        l14 = np.clip(score_mean[labels] + 0.05 * rng.standard_normal(n), -1, 1)
        b32 = np.clip(l14 - 0.03 + 0.04 * rng.standard_normal(n), -1, 1)
        table = pa.table(
            {
                "uid": pa.array(shard_uids, pa.string()),
                "url": pa.array([f"https://images.example/{row + i}.jpg" for i in range(n)], pa.string()),
                "text": pa.array([f"caption {row + i} of planted cluster {c}" for i, c in enumerate(labels)], pa.string()),
                "original_width": pa.array(rng.integers(64, 2048, n), pa.int64()),
                "original_height": pa.array(rng.integers(64, 2048, n), pa.int64()),
                "clip_b32_similarity_score": pa.array(b32, pa.float64()),
                "clip_l14_similarity_score": pa.array(l14, pa.float64()),
                "face_bboxes": pa.array([[] for _ in range(n)], pa.list_(pa.list_(pa.float64()))),
                "sha256": pa.array([hashlib.sha256(u.encode()).hexdigest() for u in shard_uids], pa.string()),
            }
        )
        pq.write_table(table, root / f"{stem}.parquet")
        (np.savez_compressed if compressed else np.savez)(root / f"{stem}.npz", **npz)
        stems.append(stem)
        uids.extend(shard_uids)
        planted.append(labels)
        row += n
    return PlantedPool(root, stems, uids, np.concatenate(planted) if planted else np.empty(0, int), list(rows_per_shard))


def read_pool_embedding(pool: PlantedPool, name: str = "l14_txt") -> np.ndarray:
    """The whole pool's `name` array (parts joined with +), float32, pool order: for direct checks."""
    parts = []
    for stem in pool.stems:
        with np.load(pool.root / f"{stem}.npz") as z:
            parts.append(np.concatenate([z[p].astype(np.float32) for p in name.split("+")], axis=1))
    return np.concatenate(parts)


def read_pool_table(pool: PlantedPool) -> pa.Table:
    """All shards' parquet rows, pool order."""
    return pa.concat_tables([pq.read_table(pool.root / f"{s}.parquet") for s in pool.stems])
