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
import pyarrow.parquet as pq

from clusterqc import subset as local
from clusterqc.model import Verdict

BUCKETS = 64  # range partitions of the sort (by a key's first byte)


def _chunk_step(
    item: tuple[Any, ...], column: str, value_set: pa.Array, score_column: str | None = None,
    cut_value: float | None = None,
) -> tuple[list[np.ndarray], dict[Any, int], int]:
    """One chunk: (kept keys split into BUCKETS by first byte, rows per cluster key, pool rows at or above the cut).

    The selection is clusterqc.subset's own per-chunk steps (`select_chunk`, then `apply_cut`
    when a score cut is asked for), so both engines keep exactly the same samples.
    """
    kept: list[np.ndarray] = []
    sizes: Counter[Any] = Counter()
    above = 0
    for chunk in _batches(item, column, score_column):
        part = local.select_chunk(chunk, value_set, score_column)
        keys = part.keys
        if cut_value is not None and part.scores is not None and part.pool_scores is not None:
            keys = local.apply_cut(keys, part.scores, cut_value)
            above += int(np.count_nonzero(part.pool_scores >= cut_value))
        kept.append(keys)
        sizes.update(part.counts)
    keys_all = np.concatenate(kept) if kept else np.empty(0, dtype="S16")
    first = keys_all.view(np.uint8).reshape(-1, 16)[:, 0] if len(keys_all) else np.empty(0, np.uint8)
    bucket = first.astype(np.int64) * BUCKETS // 256
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
    parts = [keys_all[order[bounds[b] : bounds[b + 1]]] for b in range(BUCKETS)]
    return parts, dict(sizes), above


def _scores_step(item: tuple[Any, ...], column: str, score_column: str) -> np.ndarray:
    """One chunk's scores (checked as the local export checks them): the input of a top-F cut."""
    return np.concatenate(
        [local.chunk_scores(c.scores, score_column, c.first_row) for c in _batches(item, column, score_column)]
        or [np.empty(0)]
    )


def _batches(item: tuple[Any, ...], column: str, score_column: str | None = None) -> Iterator[local.Chunk]:
    """A chunk's batches as clusterqc.subset `Chunk`s: its Parquet row groups, or the shipped batch."""
    if item[0] == "batch":
        yield item[1]
        return
    _, path, groups, first_row = item
    pf = pq.ParquetFile(path)
    row = first_row
    columns = ["uid", column] + ([score_column] if score_column else [])
    try:
        for batch in pf.iter_batches(row_groups=groups, columns=columns):
            scores = batch.column(score_column) if score_column else None
            yield local.Chunk(row, batch.column("uid"), batch.column(column), column, scores)
            row += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise local.SubsetError(f"{path}: after row {row - 1}: {exc}") from exc


def _sort_step(parts: list[np.ndarray]) -> np.ndarray:
    """One range bucket's keys, sorted, as DataComp's u8,u8 records (clusterqc.subset.sort_keys)."""
    return local.sort_keys(list(parts))


def _chunks(
    path: Path, batch_rows: int, score_column: str | None = None
) -> tuple[str, Iterable[tuple[Any, ...]], list[int] | None]:
    """(key column, chunk items, rows per chunk when known) for an assignments file."""
    if score_column is not None:
        local.require_score_column(path, score_column)
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
    stream = local.iter_chunks(path, score_column, batch_rows=batch_rows)
    first = next(stream, None)
    if first is None:
        return "cluster_id", [], []
    column = first.key_column

    def shipped() -> Iterator[tuple[Any, ...]]:
        yield ("batch", first)
        for chunk in stream:
            yield ("batch", chunk)

    return column, shipped(), None


def build_subset_on(
    engine: Any,
    store: Any,
    assignments: str | os.PathLike[str],
    keep: Iterable[str] = (Verdict.ACCEPTABLE.value,),
    include_unreviewed: bool = False,
    batch_rows: int = local.PARQUET_BATCH_ROWS,
    cut: local.ScoreCut | None = None,
    dataset: str | None = None,
) -> local.SubsetResult:
    """clusterqc.subset.build_subset with the per-chunk work and the sort run by `engine`.

    Like the local export, the assignments belong to one dataset (None: the only one).

    A top-F cut needs the pool's score at one rank before any chunk can be filtered, so it
    takes one more pass: tasks return each chunk's scores, the driver finds the cut (as the
    local export does, with `score_cut`), then the selection pass applies it per chunk.
    """
    keep = {Verdict(k).value for k in keep}
    dataset = store.resolve_dataset(dataset)
    verdicts = local.cluster_verdicts(store, include_unreviewed, dataset)
    kept_ids = {c for c, v in verdicts.items() if v in keep}
    known = store.cluster_ids(dataset)
    names = local._ClusterNames(known)  # noqa: SLF001
    path = Path(assignments)
    sizes: Counter[Any] = Counter()
    buckets: list[list[np.ndarray]] = [[] for _ in range(BUCKETS)]
    score_column = cut.column if cut is not None else None
    cut_value: float | None = None
    cut_alone: int | None = None
    above = 0
    try:
        if not path.is_file():
            raise local.SubsetError(f"{path}: no such file")
        if cut is not None and cut.top_fraction is not None:
            column, items, rows = _chunks(path, batch_rows, score_column)
            pool = np.concatenate(
                list(engine.map(_scores_step, items, column, score_column, desc="scores", rows=rows)) or [np.empty(0)]
            )
            cut_value = local.score_cut(pool, cut)
            cut_alone = int(np.count_nonzero(pool >= cut_value))
            del pool
        elif cut is not None:
            cut_value = float(cut.clip_min)
        column, items, rows = _chunks(path, batch_rows, score_column)
        value_set = engine.put(names.keys(kept_ids, column))
        for parts, counts, n_above in engine.map(
            _chunk_step, items, column, value_set, score_column, cut_value, desc="subset", rows=rows
        ):
            for b, part in enumerate(parts):
                buckets[b].append(part)
            sizes.update(counts)
            above += n_above
    except local.SubsetError as exc:
        msg = str(exc)
        raise local.SubsetError(msg if msg.startswith(str(assignments)) else f"{assignments}: {msg}") from exc
    if cut is not None and cut_alone is None:
        cut_alone = above
    sorted_parts = list(engine.map(_sort_step, buckets, desc="sort"))
    buckets.clear()
    uids = np.concatenate(sorted_parts) if sorted_parts else np.empty(0, dtype=local.UID_DTYPE)
    return local.subset_result(names, column, sizes, kept_ids, verdicts, known, uids, cut, cut_value, cut_alone)
