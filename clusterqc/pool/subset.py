"""`export-uids --engine ray`: the uid subset export as steps an engine runs, byte-identical to the local one.

The work is clusterqc.subset's, called per chunk, not rewritten: `_cluster_keys` (join key
per row), `uid_keys` (uid conversion, with the same row numbers in errors), `pc.is_in`
against the kept clusters' keys (the join with the labels), and `sort_keys` (the sort).
What this module adds is the split:
- chunks: a Parquet assignments file is cut along its row groups and each task reads its
  own row groups (the file must be on storage the workers see, like the pool); a CSV cannot
  be cut safely (quoted newlines), so the driver streams it in batches and ships each batch;
- the global sort is a range partition: each chunk splits its kept 16-byte keys into
  buckets by their first byte, each bucket is sorted by its own task with `sort_keys`, and
  the buckets are concatenated in order. Byte order of the keys is DataComp's order, so the
  concatenation is exactly the sorted array the local export writes.
The driver gathers the kept keys between the two steps (16 bytes per kept uid, as the local
export holds them too).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clusterqc import subset as local
from clusterqc.model import Verdict

BUCKETS = 64  # range partitions of the sort (by a key's first byte)


def _chunk_step(item: tuple[Any, ...], column: str, value_set: pa.Array) -> tuple[list[np.ndarray], dict[Any, int]]:
    """One chunk: (kept keys split into BUCKETS by first byte, rows per cluster key)."""
    kept: list[np.ndarray] = []
    sizes: Counter[Any] = Counter()
    for first_row, uids, raw_keys in _batches(item, column):
        keys = local._cluster_keys(raw_keys, column, first_row)  # noqa: SLF001 (same join as build_subset)
        uid_bytes = local.uid_keys(uids, first_row)
        mask = pc.is_in(keys, value_set=value_set).to_numpy(zero_copy_only=False)
        kept.append(uid_bytes[mask])
        counts = pc.value_counts(keys)
        sizes.update(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))
    keys_all = np.concatenate(kept) if kept else np.empty(0, dtype="S16")
    first = keys_all.view(np.uint8).reshape(-1, 16)[:, 0] if len(keys_all) else np.empty(0, np.uint8)
    bucket = first.astype(np.int64) * BUCKETS // 256
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
    parts = [keys_all[order[bounds[b] : bounds[b + 1]]] for b in range(BUCKETS)]
    return parts, dict(sizes)


def _batches(item: tuple[Any, ...], column: str) -> Iterator[tuple[int, pa.Array, pa.Array]]:
    """(first 1-based row, uids, cluster keys) of a chunk: its Parquet row groups, or the shipped batch."""
    if item[0] == "batch":
        _, first_row, uids, keys = item
        yield first_row, uids, keys
        return
    _, path, groups, first_row = item
    pf = pq.ParquetFile(path)
    row = first_row
    try:
        for batch in pf.iter_batches(row_groups=groups, columns=["uid", column]):
            yield row, batch.column("uid"), batch.column(column)
            row += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise local.SubsetError(f"{path}: after row {row - 1}: {exc}") from exc


def _sort_step(parts: list[np.ndarray]) -> np.ndarray:
    """One range bucket's keys, sorted, as DataComp's u8,u8 records (clusterqc.subset.sort_keys)."""
    return local.sort_keys(list(parts))


def _chunks(path: Path, batch_rows: int) -> tuple[str, Iterable[tuple[Any, ...]], list[int] | None]:
    """(key column, chunk items, rows per chunk when known) for an assignments file."""
    if local._is_parquet(path):  # noqa: SLF001
        pf = pq.ParquetFile(path)
        column = local._choose_columns(path, pf.schema_arrow.names).key  # noqa: SLF001
        items, rows = [], []
        groups: list[int] = []
        first = at = 1
        for g in range(pf.metadata.num_row_groups):
            groups.append(g)
            at += pf.metadata.row_group(g).num_rows
            if at - first >= batch_rows or g == pf.metadata.num_row_groups - 1:
                items.append(("parquet", str(path), groups, first))
                rows.append(at - first)
                groups, first = [], at
        return column, items, rows
    stream = local.iter_assignments(path, batch_rows=batch_rows)
    first = next(stream, None)
    if first is None:
        return "cluster_id", [], []
    column = first[3]

    def shipped() -> Iterator[tuple[Any, ...]]:
        yield ("batch", first[0], first[1], first[2])
        for row, uids, keys, _ in stream:
            yield ("batch", row, uids, keys)

    return column, shipped(), None


def build_subset_on(
    engine: Any,
    store: Any,
    assignments: str | os.PathLike[str],
    keep: Iterable[str] = (Verdict.ACCEPTABLE.value,),
    include_unreviewed: bool = False,
    batch_rows: int = local.PARQUET_BATCH_ROWS,
) -> local.SubsetResult:
    """clusterqc.subset.build_subset with the per-chunk work and the sort run by `engine`."""
    keep = {Verdict(k).value for k in keep}
    verdicts = local.cluster_verdicts(store, include_unreviewed)
    kept_ids = {c for c, v in verdicts.items() if v in keep}
    known = store.cluster_ids()
    names = local._ClusterNames(known)  # noqa: SLF001
    path = Path(assignments)
    sizes: Counter[Any] = Counter()
    buckets: list[list[np.ndarray]] = [[] for _ in range(BUCKETS)]
    try:
        if not path.is_file():
            raise local.SubsetError(f"{path}: no such file")
        column, items, rows = _chunks(path, batch_rows)
        value_set = engine.put(names.keys(kept_ids, column))
        for parts, counts in engine.map(_chunk_step, items, column, value_set, desc="subset", rows=rows):
            for b, part in enumerate(parts):
                buckets[b].append(part)
            sizes.update(counts)
    except local.SubsetError as exc:
        msg = str(exc)
        raise local.SubsetError(msg if msg.startswith(str(assignments)) else f"{assignments}: {msg}") from exc
    sorted_parts = list(engine.map(_sort_step, buckets, desc="sort"))
    buckets.clear()
    uids = np.concatenate(sorted_parts) if sorted_parts else np.empty(0, dtype=local.UID_DTYPE)
    seen = [names.name(k, column) for k in sizes]
    known_set = set(known)
    kept_clusters = sum(1 for c in seen if c in kept_ids)
    return local.SubsetResult(
        kept_clusters=kept_clusters,
        dropped_clusters=len(seen) - kept_clusters,
        unlabelled_clusters=sum(1 for c in seen if c not in verdicts),
        unknown_clusters=sum(1 for c in seen if c not in known_set),
        kept_samples=len(uids),
        total_samples=sum(sizes.values()),
        uids=uids,
    )
