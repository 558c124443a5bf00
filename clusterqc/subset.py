"""The DataComp uid subset: the samples of the clusters we keep, as DataComp's tools read them.

DataComp's resharder and baselines take a `.npy` of uids: each 32-hex-digit uid as two
unsigned 64-bit integers (its first 16 hex digits, then its last 16; `np.dtype("u8,u8")`),
sorted. The original pipeline built it with one Python `int(u, 16)` per uid; a
DataComp-small pool has 12.8M of them, so here:
- the assignments file (`uid` -> cluster; CSV or Parquet) is streamed in record batches with
  pyarrow and never held whole; only the kept uids (16 bytes each) accumulate;
- uids are decoded without a Python loop: after a length check, the batch's contiguous UTF-8
  buffer (n x 32 bytes) goes through `binascii.unhexlify` in one C call, giving 16 big-endian
  bytes per uid; those sort like the (first 16 digits, last 16) integer pairs. They are
  sorted by their first 8 bytes as uint64 (numpy's SIMD sort) with a byte sort only where
  those tie, and one byte-swapping pass turns them into two native uint64 each;
- a malformed uid (wrong length, a non-hex digit, missing) stops everything with its row
  number, and nothing is written: the output appears by rename only when complete.
Clusters are matched by a `cluster_id` column (ids as in the store), or by the original
pipeline's integer `cluster_label` n, which names the cluster `Cluster_<n>`.

A CLIP-score cut (`ScoreCut`: at least X, or the pool's top F) combines verdicts with the
measure DataComp's own baseline filters by (`clip_l14_similarity_score` of the DataComp-layout
assignments). It stays one streamed pass: each chunk is reduced by plain functions
(`select_chunk`, then `apply_cut` once the cut is known), so any engine (the local loop here,
Ray tasks) can run the same steps. The top-F cut is the score at rank ceil(F x pool size) in
descending order over the whole file, found with `np.partition` (linear, no full sort); ties
at the cut are kept.
"""

from __future__ import annotations

import binascii
import io
import csv
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clusterqc.export import ExportError, export_frame, write_atomic
from clusterqc.model import Verdict
from clusterqc.store import Store

UID_DTYPE = np.dtype("u8,u8")
UID_HEX_DIGITS = 32
CSV_BLOCK_BYTES = 32 << 20
PARQUET_BATCH_ROWS = 1 << 20
CLUSTER_NAME = re.compile(r"Cluster_(\d+)")
INT_TEXT = r"^[+-]?\d+$"
PARQUET_SUFFIXES = (".parquet", ".pq")
SCORE_COLUMN = "clip_l14_similarity_score"  # DataComp's CLIP L/14 image-text cosine, in [-1, 1]
BASELINE_TOP = 0.3  # DataComp's CLIP-score baseline keeps the pool's top 30% by this score

_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i


class SubsetError(ValueError):
    """A problem with the assignments file, named by file and row; nothing was written."""


@dataclass(frozen=True)
class SubsetResult:
    """What `build_subset` kept and dropped, for the CLI and the Export page to report."""

    kept_clusters: int
    dropped_clusters: int
    unlabelled_clusters: int  # dropped because nobody (and no model, if asked) labelled them
    unknown_clusters: int  # in the assignments but not in the database (counted in unlabelled)
    kept_samples: int
    total_samples: int
    uids: np.ndarray  # the sorted subset, dtype UID_DTYPE
    cut: "ScoreCut | None" = None
    cut_value: float | None = None  # the score a sample needs (the cut's X, or the top-F score)
    cut_alone_samples: int | None = None  # pool samples with a score >= cut_value, any cluster
    kept_cluster_ids: tuple[str, ...] = field(default=(), repr=False)

    @property
    def kept_fraction(self) -> float:
        return self.kept_samples / self.total_samples if self.total_samples else 0.0

    @property
    def cut_alone_fraction(self) -> float | None:
        if self.cut_alone_samples is None:
            return None
        return self.cut_alone_samples / self.total_samples if self.total_samples else 0.0


@dataclass(frozen=True)
class ScoreCut:
    """A CLIP-score filter on the samples of kept clusters: `clip_min` X or `top_fraction` F.

    X keeps scores >= X. F keeps scores >= the score of the sample at rank ceil(F x pool size)
    (descending, over the whole assignments file), so ties at that score are all kept.
    """

    clip_min: float | None = None
    top_fraction: float | None = None
    column: str = SCORE_COLUMN

    def __post_init__(self) -> None:
        if (self.clip_min is None) == (self.top_fraction is None):
            raise SubsetError("give one score cut: --clip-min X or --clip-top F")
        if self.clip_min is not None and not math.isfinite(self.clip_min):
            raise SubsetError(f"--clip-min must be a finite number, got {self.clip_min}")
        if self.top_fraction is not None and not (0 < self.top_fraction <= 1):
            raise SubsetError(f"--clip-top must be a fraction in (0, 1], got {self.top_fraction}")

    def describe(self) -> str:
        if self.clip_min is not None:
            return f"{self.column} >= {self.clip_min:g}"
        return f"top {self.top_fraction:.4g} of the pool by {self.column}"


# --------------------------------------------------------------------------- uid decoding


def _fixed_width_bytes(uids: pa.Array) -> np.ndarray:
    """The (n, 32) uint8 matrix of a string array whose values are all 32 bytes long (no copy)."""
    if pa.types.is_large_string(uids.type) or pa.types.is_large_binary(uids.type):
        offset_type = np.int64
    else:
        offset_type = np.int32
    _, offsets_buf, data_buf = uids.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[uids.offset : uids.offset + len(uids) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(uids), UID_HEX_DIGITS)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def uid_keys(uids: pa.Array, first_row: int = 1) -> np.ndarray:
    """32-hex-digit uids -> 16-byte big-endian keys (dtype S16); SubsetError names a bad row.

    Big-endian bytes compare like the (first 16 digits, last 16) pair of integers, so the
    keys sort in DataComp's order by their bytes (see `sorted_keys`). `first_row` is the 1-based
    row number of `uids[0]` in the file, for the error message.
    """
    kind = uids.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)):
        uids = uids.cast(pa.string())
    if uids.null_count:
        bad = int(np.flatnonzero(uids.is_null().to_numpy(zero_copy_only=False))[0])
        raise SubsetError(f"row {first_row + bad}: the uid is missing")
    lengths = pc.binary_length(uids).to_numpy()
    wrong = np.flatnonzero(lengths != UID_HEX_DIGITS)
    if wrong.size:
        bad = int(wrong[0])
        raise SubsetError(
            f"row {first_row + bad}: uid {_shown(uids[bad].as_py())} is not {UID_HEX_DIGITS} hex digits"
        )
    if len(uids) == 0:
        return np.empty(0, dtype="S16")
    hex_bytes = _fixed_width_bytes(uids)
    try:
        # One C call over the whole batch; it accepts upper and lower case and nothing else.
        return np.frombuffer(binascii.unhexlify(hex_bytes.reshape(-1)), dtype="S16")
    except binascii.Error:
        bad = _first_non_hex_row(hex_bytes)
        raise SubsetError(
            f"row {first_row + bad}: uid {_shown(uids[bad].as_py())} has a character that is not a hex digit"
        ) from None


def _first_non_hex_row(hex_bytes: np.ndarray) -> int:
    """Index of the first row with a non-hex byte (only run once a batch is known to have one)."""
    return int(np.flatnonzero((_NIBBLE[hex_bytes] == 255).any(axis=1))[0])


def keys_to_pairs(keys: np.ndarray) -> np.ndarray:
    """16-byte big-endian keys -> DataComp's `u8,u8` records (first 16 hex digits, last 16).

    One byte-swapping pass into a native (2n,) uint64 array, then a view as n records.
    """
    words = np.ascontiguousarray(keys, dtype="S16").view(">u8").astype(np.uint64)
    return words.view(UID_DTYPE)


def uids_to_pairs(uids: pa.Array, first_row: int = 1) -> np.ndarray:
    """32-hex-digit uids -> `u8,u8` records in input order (the vectorised reference_pairs)."""
    return keys_to_pairs(uid_keys(uids, first_row))


def sorted_keys(keys: np.ndarray) -> np.ndarray:
    """The S16 keys in byte order, mostly by numpy's SIMD sort of 64-bit integers.

    A byte sort of S16 keys compares 16 bytes per step and cannot use SIMD; sorting uint64 is
    about twice as fast (measured in bench/bench_export.py). So each key's first 8 bytes, with
    their low bits replaced by the key's row number, are sorted as one uint64: the result is
    ordered by the first 64 - b bits of each key (b = bits needed for a row number), and the
    row numbers give the permutation. Keys that share those leading bits (a few dozen pairs
    among 12.8M random uids; all of them in the worst case) are then put in full byte order by
    a byte sort of just those positions: runs of equal prefixes sit together in prefix order,
    so sorting their union in place orders each run and leaves the rest alone.
    """
    keys = np.ascontiguousarray(keys, dtype="S16")
    n = len(keys)
    bits = max((n - 1).bit_length(), 1)
    if n < 2 or bits > 32:  # beyond 2^32 keys too few prefix bits would be left
        return np.sort(keys)
    index_mask = np.uint64((1 << bits) - 1)
    packed = keys.view(">u8")[0::2].astype(np.uint64)
    packed &= ~index_mask
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    # Neighbours share a prefix when their xor has no bit above the row-number bits.
    tied = np.bitwise_xor(packed[1:], packed[:-1]) <= index_mask
    packed &= index_mask  # now the row numbers, in sorted order (viewed, not copied)
    out = np.take(keys, packed.view(np.int64))
    del packed
    if tied.any():
        in_run = np.zeros(n, dtype=bool)
        in_run[:-1] |= tied
        in_run[1:] |= tied
        where = np.flatnonzero(in_run)
        out[where] = np.sort(out[where])
    return out


def sort_keys(chunks: list[np.ndarray]) -> np.ndarray:
    """Concatenate key chunks (emptying the list) and sort: the sorted `u8,u8` array DataComp reads.

    The list is cleared so that its chunks are freed before the sort allocates (peak memory).
    `sorted_keys` is several times faster than np.lexsort over two uint64 columns or
    np.sort on the structured array, and about 1.5x as fast as np.sort on S16.
    """
    keys = np.concatenate(chunks) if chunks else np.empty(0, dtype="S16")
    chunks.clear()
    keys = sorted_keys(keys)
    if sys.byteorder != "little":
        return keys_to_pairs(keys)
    # Swap the sorted keys' bytes in place: big-endian halves become native uint64 without a copy.
    words = keys.view(">u8")
    words.byteswap(inplace=True)
    return words.view("<u8").view(UID_DTYPE)


def reference_pairs(uids: Iterable[str]) -> np.ndarray:
    """The original pipeline's per-uid conversion: the slow reference tests and the bench compare to."""
    return np.array([(int(u[:16], 16), int(u[16:32], 16)) for u in uids], dtype=UID_DTYPE)


# --------------------------------------------------------------------------- assignments file


@dataclass(frozen=True)
class _Columns:
    uid: str
    key: str  # "cluster_id" (store ids) or "cluster_label" (integer n of Cluster_<n>)


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _choose_columns(path: Path, names: list[str]) -> _Columns:
    if "uid" not in names:
        raise SubsetError(f"{path}: no 'uid' column (columns: {', '.join(names) or 'none'})")
    for key in ("cluster_id", "cluster_label"):
        if key in names:
            return _Columns("uid", key)
    raise SubsetError(f"{path}: needs a 'cluster_id' or 'cluster_label' column (columns: {', '.join(names)})")


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise SubsetError(f"{path}: row 1: not UTF-8 text (byte {exc.start}); is it a CSV file?") from None
    except csv.Error as exc:
        raise SubsetError(f"{path}: row 1: malformed CSV header: {exc}") from None


def _parquet_file(path: Path) -> pq.ParquetFile:
    """Open a Parquet file, or say in one line why it is not one (binary, truncated)."""
    if not _is_parquet(path):
        raise SubsetError(f"{path}: not a Parquet file (it does not start with PAR1) and not a CSV file")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SubsetError(f"{path}: not a readable Parquet file (truncated or damaged: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _csv_problem(path: Path, width: int) -> str:
    """Where a CSV that pyarrow refused goes wrong, found by Python's csv reader (error path only).

    pyarrow says "Expected 2 columns, got 3" without a row; this walks the file once more,
    numbering rows like import does (the header is row 1), to name the first ragged row.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            next(reader, None)
            for n, row in enumerate(reader, start=2):
                if row and len(row) != width:
                    return f"row {n} (line {reader.line_num}): has {len(row)} cells, the header has {width}"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text at byte {exc.start}"
    except csv.Error as exc:
        return f"line {reader.line_num}: malformed CSV: {exc}"
    return ""


class _QuoteCounter(io.RawIOBase):
    """The CSV file as pyarrow reads it, counting double quotes in every block on the way.

    Why: pyarrow reads a quoted field that is never closed to the end of the file, silently
    swallowing every later row into one value. In RFC 4180 CSV quotes come in pairs ("" inside
    a quoted field is two), so an odd count at the end means an unterminated quote. Counting
    the blocks pyarrow reads anyway costs no second read of the file (bench/bench_quote_scan.py).
    """

    def __init__(self, path: Path):
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - held for pyarrow, closed by close()
        self.quotes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.quotes += data.count(b'"')
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


@dataclass(frozen=True)
class Chunk:
    """One streamed batch of the assignments file: the unit every per-chunk step works on."""

    first_row: int  # row number of the batch's first row, numbered as `iter_assignments` says
    uids: pa.Array
    keys: pa.Array  # cluster keys as read (see `_cluster_keys`)
    key_column: str  # "cluster_id" or "cluster_label"
    scores: pa.Array | None = None  # the score column, when one was asked for


def iter_assignments(
    path: str | os.PathLike[str], block_bytes: int = CSV_BLOCK_BYTES, batch_rows: int = PARQUET_BATCH_ROWS
) -> Iterator[tuple[int, pa.Array, pa.Array, str]]:
    """(first row number, uid array, cluster key array, key column name) per streamed batch.

    Rows are numbered like `clusterqc import` numbers them: in a CSV as a spreadsheet shows
    them (the header is row 1, the first data row row 2); in Parquet from 1 (no header).
    A CSV batch is about `block_bytes` of the file; a Parquet batch is `batch_rows` rows.
    """
    for chunk in iter_chunks(path, None, block_bytes, batch_rows):
        yield chunk.first_row, chunk.uids, chunk.keys, chunk.key_column


def file_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of an assignments file (Parquet schema or CSV header)."""
    path = Path(path)
    if not path.is_file():
        raise SubsetError(f"{path}: no such file")
    if _is_parquet(path) or path.suffix.lower() in PARQUET_SUFFIXES:
        return list(_parquet_file(path).schema_arrow.names)
    return _csv_header(path)


def require_score_column(path: str | os.PathLike[str], column: str = SCORE_COLUMN) -> None:
    """One line naming the file and the column when a cut is asked of a file without scores."""
    names = file_columns(path)
    if column not in names:
        raise SubsetError(
            f"{path}: no {column!r} column, which a CLIP-score cut needs (columns: {', '.join(names) or 'none'})"
        )


def iter_chunks(
    path: str | os.PathLike[str],
    score_column: str | None = None,
    block_bytes: int = CSV_BLOCK_BYTES,
    batch_rows: int = PARQUET_BATCH_ROWS,
    need_uids: bool = True,
) -> Iterator[Chunk]:
    """The assignments file as `Chunk`s, reading only the columns asked for.

    `score_column` adds the scores (SubsetError naming file and column when it is missing);
    `need_uids=False` skips the uid column (a pool profile needs only keys and scores).
    """
    path = Path(path)
    if not path.is_file():
        raise SubsetError(f"{path}: no such file")
    if score_column is not None:
        require_score_column(path, score_column)
    parquet = _is_parquet(path) or path.suffix.lower() in PARQUET_SUFFIXES
    row = 1 if parquet else 2
    header: list[str] = []
    counter: _QuoteCounter | None = None
    try:
        if parquet:
            pf = _parquet_file(path)
            cols = _choose_columns(path, pf.schema_arrow.names)
            wanted = _wanted(cols, need_uids, score_column)
            batches = pf.iter_batches(batch_size=batch_rows, columns=wanted)
        else:
            header = _csv_header(path)
            cols = _choose_columns(path, header)
            wanted = _wanted(cols, need_uids, score_column)
            types: dict[str, pa.DataType] = {cols.uid: pa.string(), cols.key: pa.string()}
            if score_column:
                types[score_column] = pa.float64()
            counter = _QuoteCounter(path)
            batches = pacsv.open_csv(
                counter,
                read_options=pacsv.ReadOptions(block_size=block_bytes),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    include_columns=wanted,
                    column_types={c: types[c] for c in wanted},
                    strings_can_be_null=False,
                ),
            )
        for batch in batches:
            yield Chunk(
                row,
                batch.column(cols.uid) if need_uids else pa.array([], pa.string()),
                batch.column(cols.key),
                cols.key,
                batch.column(score_column) if score_column else None,
            )
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        where = "" if parquet else _csv_problem(path, len(header))
        raise SubsetError(f"{path}: {where or f'after row {row - 1}: {_first_line(exc)}'}") from None
    finally:
        if counter is not None:
            counter.close()
    if counter is not None and counter.quotes % 2:
        raise SubsetError(
            f"{path}: row {row - 1}: a quoted field is never closed (it runs to the end of the file); fix the quotes"
        )


def _wanted(cols: _Columns, need_uids: bool, score_column: str | None) -> list[str]:
    """The columns a pass reads: uid (unless not needed), the cluster key, the score (if cut)."""
    return ([cols.uid] if need_uids else []) + [cols.key] + ([score_column] if score_column else [])


def _cluster_keys(keys: pa.Array, column: str, first_row: int) -> pa.Array:
    """The batch's cluster keys: strings for `cluster_id`, int64 for `cluster_label`.

    Integers are matched as integers (cheaper than building `Cluster_<n>` per row); the
    regex that names a bad row runs only once a cast has failed.
    """
    if keys.null_count:
        bad = int(np.flatnonzero(keys.is_null().to_numpy(zero_copy_only=False))[0])
        raise SubsetError(f"row {first_row + bad}: the {column} is missing")
    if column == "cluster_id":
        return keys.cast(pa.string())
    if pa.types.is_integer(keys.type):
        return keys.cast(pa.int64())
    text = keys.cast(pa.string())
    try:
        return pc.cast(text, pa.int64())
    except pa.ArrowInvalid as exc:
        ok = pc.match_substring_regex(text, INT_TEXT).to_numpy(zero_copy_only=False)
        bad = int(np.flatnonzero(~ok)[0]) if not ok.all() else None
        if bad is None:
            raise SubsetError(f"rows {first_row}-{first_row + len(text) - 1}: cluster_label: {exc}") from None
        raise SubsetError(
            f"row {first_row + bad}: cluster_label {_shown(text[bad].as_py())} is not an integer"
        ) from None


class _ClusterNames:
    """Store ids <-> the keys an assignments file uses (ids, or the n of `Cluster_<n>`)."""

    def __init__(self, ids: Iterable[str]):
        self.by_number: dict[int, str] = {}
        for cid in ids:
            m = CLUSTER_NAME.fullmatch(cid)
            if m and (int(m.group(1)) not in self.by_number or cid == f"Cluster_{int(m.group(1))}"):
                self.by_number[int(m.group(1))] = cid

    def keys(self, ids: Iterable[str], column: str) -> pa.Array:
        """The file-side keys of store `ids`, as the value set to match a batch against."""
        if column == "cluster_id":
            return pa.array(sorted(ids), type=pa.string())
        wanted = set(ids)
        return pa.array(sorted(n for n, cid in self.by_number.items() if cid in wanted), type=pa.int64())

    def name(self, key: object, column: str) -> str:
        if column == "cluster_id":
            return str(key)
        return self.by_number.get(int(key), f"Cluster_{key}")  # type: ignore[call-overload]


# --------------------------------------------------------------------------- the subset


def cluster_verdicts(store: Store, include_unreviewed: bool, dataset: str | None = None) -> dict[str, str]:
    """cluster id -> label (reviewed, or the model's when `include_unreviewed`) in one dataset."""
    df = export_frame(store, include_unreviewed, dataset=store.resolve_dataset(dataset))
    return dict(zip(df["cluster_id"].tolist(), df["label"].tolist()))


@dataclass
class ChunkPart:
    """What one chunk contributes to a subset: the pieces an engine gathers from its tasks."""

    keys: np.ndarray  # S16 uid keys of the samples of kept clusters, in file order
    scores: np.ndarray | None  # their scores (float64), when a cut is asked for
    pool_scores: np.ndarray | None  # every score of the chunk, for the pool's top-F cut
    counts: dict[object, int]  # cluster key -> samples in this chunk


def chunk_scores(scores: pa.Array, column: str, first_row: int) -> np.ndarray:
    """A chunk's scores as float64; a missing or NaN score is refused with its row number.

    A cut over a pool whose scores have holes would silently rank them somewhere; DataComp's
    pools have a score for every sample, so a hole means a broken file.
    """
    if scores.null_count:
        bad = int(np.flatnonzero(scores.is_null().to_numpy(zero_copy_only=False))[0])
        raise SubsetError(f"row {first_row + bad}: the {column} is missing")
    try:
        values = scores.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SubsetError(f"rows {first_row}-{first_row + len(scores) - 1}: {column}: {exc}") from None
    nan = np.isnan(values)
    if nan.any():
        raise SubsetError(f"row {first_row + int(np.flatnonzero(nan)[0])}: the {column} is NaN")
    return values


def select_chunk(chunk: Chunk, value_set: pa.Array, score_column: str | None = None) -> ChunkPart:
    """Step 1 per chunk: the uids (and scores) of the kept clusters' samples, and cluster sizes."""
    keys = _cluster_keys(chunk.keys, chunk.key_column, chunk.first_row)
    uid_bytes = uid_keys(chunk.uids, chunk.first_row)
    mask = pc.is_in(keys, value_set=value_set).to_numpy(zero_copy_only=False)
    pool_scores = None
    kept_scores = None
    if score_column is not None and chunk.scores is not None:
        pool_scores = chunk_scores(chunk.scores, score_column, chunk.first_row)
        kept_scores = pool_scores[mask]
    counts = pc.value_counts(keys)
    return ChunkPart(
        uid_bytes[mask], kept_scores, pool_scores,
        dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())),
    )


def score_cut(pool_scores: np.ndarray, cut: ScoreCut) -> float:
    """The score a sample needs: X itself, or the score at rank ceil(F x n) in descending order.

    `np.partition` puts the (n - r)-th smallest (0-based) in place in linear time: that is the
    r-th largest, the sample at rank r.
    """
    if cut.clip_min is not None:
        return float(cut.clip_min)
    n = len(pool_scores)
    if n == 0:
        return math.inf
    assert cut.top_fraction is not None
    # Exact decimal arithmetic: in floats 0.3 x 10 is 3.0000000000000004, whose ceil is 4.
    rank = min(max(math.ceil(Fraction(repr(cut.top_fraction)) * n), 1), n)
    index = n - rank
    return float(np.partition(pool_scores, index)[index])


def apply_cut(keys: np.ndarray, scores: np.ndarray, cut_value: float) -> np.ndarray:
    """Step 2 per chunk: keep the samples whose score is at least the cut (ties kept)."""
    return keys[scores >= cut_value]


def build_subset(
    store: Store,
    assignments: str | os.PathLike[str],
    keep: Iterable[str] = (Verdict.ACCEPTABLE.value,),
    include_unreviewed: bool = False,
    block_bytes: int = CSV_BLOCK_BYTES,
    batch_rows: int = PARQUET_BATCH_ROWS,
    cut: ScoreCut | None = None,
    dataset: str | None = None,
) -> SubsetResult:
    """Stream the assignments, keep the uids of clusters labelled one of `keep`, sort them.

    With a `cut`, only those samples whose score passes it (see `ScoreCut`) are kept. An
    assignments file belongs to one clustering: `dataset` (None: the only one; with several
    the DatasetError lists them).
    """
    keep = {Verdict(k).value for k in keep}
    dataset = store.resolve_dataset(dataset)
    verdicts = cluster_verdicts(store, include_unreviewed, dataset)
    kept_ids = {c for c, v in verdicts.items() if v in keep}
    known = store.cluster_ids(dataset)
    names = _ClusterNames(known)
    sizes: Counter[object] = Counter()
    parts: list[ChunkPart] = []
    column = "cluster_id"
    value_set: pa.Array | None = None
    score_column = cut.column if cut is not None else None
    try:
        for chunk in iter_chunks(assignments, score_column, block_bytes, batch_rows):
            column = chunk.key_column
            if value_set is None:
                value_set = names.keys(kept_ids, column)
            part = select_chunk(chunk, value_set, score_column)
            sizes.update(part.counts)
            part.counts = {}
            parts.append(part)
    except SubsetError as exc:
        msg = str(exc)
        raise SubsetError(msg if msg.startswith(str(assignments)) else f"{assignments}: {msg}") from exc
    cut_value = cut_alone = None
    if cut is not None:
        pool = np.concatenate([p.pool_scores for p in parts if p.pool_scores is not None] or [np.empty(0)])
        for p in parts:
            p.pool_scores = None
        cut_value = score_cut(pool, cut)
        cut_alone = int(np.count_nonzero(pool >= cut_value))
        del pool
        kept_keys = [apply_cut(p.keys, p.scores, cut_value) for p in parts if p.scores is not None]
    else:
        kept_keys = [p.keys for p in parts]
    parts.clear()
    uids = sort_keys(kept_keys)
    return subset_result(names, column, sizes, kept_ids, verdicts, known, uids, cut, cut_value, cut_alone)


def subset_result(
    names: "_ClusterNames", column: str, sizes: Counter[object], kept_ids: set[str], verdicts: dict[str, str],
    known: Iterable[str], uids: np.ndarray, cut: ScoreCut | None, cut_value: float | None, cut_alone: int | None,
) -> SubsetResult:
    """The summary both engines report: clusters seen in the assignments, kept, unlabelled, unknown."""
    seen = [names.name(k, column) for k in sizes]
    known_set = set(known)
    kept_seen = tuple(c for c in seen if c in kept_ids)
    return SubsetResult(
        kept_clusters=len(kept_seen),
        dropped_clusters=len(seen) - len(kept_seen),
        unlabelled_clusters=sum(1 for c in seen if c not in verdicts),
        unknown_clusters=sum(1 for c in seen if c not in known_set),
        kept_samples=len(uids),
        total_samples=sum(sizes.values()),
        uids=uids,
        cut=cut,
        cut_value=cut_value,
        cut_alone_samples=cut_alone,
        kept_cluster_ids=kept_seen,
    )


def build_subset_from_upload(
    store: Store, name: str, data: bytes, keep: Iterable[str], include_unreviewed: bool = False,
    cut: ScoreCut | None = None,
    dataset: str | None = None,
) -> SubsetResult:
    """`build_subset` over uploaded bytes (the Export page); errors name the upload, not the copy.

    The readers stream from a path (pyarrow picks CSV or Parquet by extension), so the bytes go
    to a temporary file with the upload's extension first.
    """
    suffix = Path(name).suffix or ".csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"assignments{suffix}"
        path.write_bytes(data)
        try:
            return build_subset(store, path, keep, include_unreviewed, cut=cut, dataset=dataset)
        except SubsetError as exc:
            raise SubsetError(str(exc).replace(str(path), name)) from exc


def uids_npy_bytes(uids: np.ndarray) -> bytes:
    """The subset as the bytes of a .npy file (a download button's payload)."""
    buf = io.BytesIO()
    np.save(buf, uids, allow_pickle=False)
    return buf.getvalue()


def save_uids(uids: np.ndarray, out: str | os.PathLike[str]) -> None:
    """np.save to a temporary file beside `out`, then rename (never a half-written subset)."""
    try:
        write_atomic(out, lambda fh: np.save(fh, uids, allow_pickle=False))
    except ExportError as exc:
        raise SubsetError(str(exc)) from None
