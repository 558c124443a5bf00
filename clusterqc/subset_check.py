"""`clusterqc check-subset`: is a uid file safe to hand to DataComp's resharder?

The resharder finds each pool uid in the subset with `np.searchsorted`, so an unsorted file
silently drops samples, a duplicated uid silently upsamples that pair, and a file of another
dtype is misread. Nothing in a multi-day training run would say so. This reads the file
without pickles and reports each kind of problem once, with its first offending index.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from clusterqc.subset import UID_DTYPE, SubsetError, iter_chunks, sorted_keys, uid_keys


@dataclass(frozen=True)
class SubsetCheck:
    """The outcome: the uid count and one line per problem kind (empty when the file is good)."""

    path: str
    count: int
    problems: tuple[str, ...] = field(default=())
    pool: str | None = None  # what the uids were checked against, if anything

    @property
    def ok(self) -> bool:
        return not self.problems


def load_subset(path: str | os.PathLike[str]) -> np.ndarray:
    """np.load without pickles (a pickled .npy could run code); SubsetError on anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise SubsetError(f"{path}: no such file")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:  # object arrays, or not an .npy at all
        raise SubsetError(f"{path}: not a numpy .npy uid file: {str(exc).splitlines()[0]}") from None
    except (OSError, EOFError) as exc:
        raise SubsetError(f"{path}: cannot read: {exc}") from None
    if not isinstance(arr, np.ndarray):
        raise SubsetError(f"{path}: holds several arrays (an .npz?), expected one u8,u8 array")
    return arr


def subset_keys(uids: np.ndarray) -> np.ndarray:
    """`u8,u8` records -> 16-byte big-endian keys, which compare like the (first, last) pairs."""
    out = np.empty((len(uids), 2), dtype=">u8")
    out[:, 0] = uids["f0"]
    out[:, 1] = uids["f1"]
    return out.view("S16").reshape(-1)


def _first_unsorted(keys: np.ndarray) -> int | None:
    bad = np.flatnonzero(keys[1:] < keys[:-1])
    return int(bad[0]) + 1 if bad.size else None


def _first_duplicate(keys: np.ndarray, is_sorted: bool) -> int | None:
    """Index of the first element equal to an earlier one."""
    if len(keys) < 2:
        return None
    if is_sorted:
        dup = np.flatnonzero(keys[1:] == keys[:-1])
        return int(dup[0]) + 1 if dup.size else None
    order = np.argsort(keys, kind="stable")  # equal keys keep their file order
    ordered = keys[order]
    later = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    return int(order[later].min()) if later.size else None


def pool_keys_from_assignments(path: str | os.PathLike[str]) -> np.ndarray:
    """Every uid of an assignments file (CSV or Parquet), as sorted 16-byte keys."""
    parts = [uid_keys(chunk.uids, chunk.first_row) for chunk in iter_chunks(path)]
    return sorted_keys(np.concatenate(parts) if parts else np.empty(0, dtype="S16"))


def _pool_shards(folder: Path) -> Iterator[Path]:
    shards = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not shards:
        raise SubsetError(f"{folder}: no .parquet shards in this folder")
    yield from shards


def pool_keys_from_shards(folder: str | os.PathLike[str]) -> np.ndarray:
    """Every uid of a folder of DataComp parquet shards, reading only their `uid` column."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SubsetError(f"{folder}: not a folder")
    parts = []
    for shard in _pool_shards(folder):
        try:
            pf = pq.ParquetFile(shard)
            if "uid" not in pf.schema_arrow.names:
                raise SubsetError(f"{shard}: no 'uid' column (columns: {', '.join(pf.schema_arrow.names)})")
            row = 1
            for batch in pf.iter_batches(columns=["uid"], batch_size=1 << 20):
                try:
                    parts.append(uid_keys(batch.column("uid"), row))
                except SubsetError as exc:
                    raise SubsetError(f"{shard}: {exc}") from None
                row += batch.num_rows
        except (OSError, ValueError) as exc:
            if isinstance(exc, SubsetError):
                raise
            raise SubsetError(f"{shard}: not a readable Parquet shard: {str(exc).splitlines()[0]}") from None
    return sorted_keys(np.concatenate(parts))


def _first_outside(keys: np.ndarray, pool: np.ndarray) -> tuple[int, int] | None:
    """(count, first index) of the subset keys that are not in the sorted pool keys."""
    if len(pool) == 0:
        return (len(keys), 0) if len(keys) else None
    at = np.minimum(np.searchsorted(pool, keys), len(pool) - 1)
    missing = np.flatnonzero(pool[at] != keys)
    return (int(missing.size), int(missing[0])) if missing.size else None


def check_subset(
    path: str | os.PathLike[str],
    assignments: str | os.PathLike[str] | None = None,
    pool_dir: str | os.PathLike[str] | None = None,
    allow_duplicates: bool = False,
) -> SubsetCheck:
    """Check dtype, order, duplicates and (with a pool) membership; SubsetError if unreadable."""
    arr = load_subset(path)
    name = str(path)
    if arr.ndim != 1 or arr.dtype != UID_DTYPE:
        shape = "x".join(map(str, arr.shape)) or "scalar"
        return SubsetCheck(name, int(arr.size), (f"dtype: {arr.dtype} ({shape}), expected a 1-d array of u8,u8"
                                                 " (DataComp's (first 16 hex digits, last 16) pairs)",))
    keys = subset_keys(np.asarray(arr))
    problems = []
    unsorted = _first_unsorted(keys)
    if unsorted is not None:
        problems.append(f"order: not sorted, first at index {unsorted} (np.searchsorted in the resharder"
                        " would miss samples)")
    dup = _first_duplicate(keys, unsorted is None)
    if dup is not None and not allow_duplicates:
        n_dup = len(keys) - len(np.unique(keys))
        problems.append(f"duplicates: {n_dup:,} repeated uid(s), first at index {dup} (the resharder upsamples"
                        " them; pass --allow-duplicates if that is meant)")
    pool_name = None
    if assignments is not None or pool_dir is not None:
        pool = pool_keys_from_assignments(assignments) if assignments is not None else pool_keys_from_shards(pool_dir)
        pool_name = str(assignments if assignments is not None else pool_dir)
        outside = _first_outside(keys, pool)
        if outside is not None:
            problems.append(f"pool: {outside[0]:,} uid(s) not in {pool_name}, first at index {outside[1]}")
    return SubsetCheck(name, len(keys), tuple(problems), pool_name)
