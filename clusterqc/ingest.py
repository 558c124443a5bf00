"""Readers for every cluster-file format a curator arrives with, validated into `Cluster`s.

Why it looks the way it does:
- A file is read and validated whole before anything touches the database, and several files
  are written with ONE `Store.import_clusters` call, so an import is all or nothing.
- Every problem is an `IngestError(file, where, why)`: the file, the place a person can find
  (line and column, CSV row, JSON key or item, Parquet row) and what is wrong. Anything else
  escaping from here is a bug, and the property-based tests hunt for it.
- Text is kept exactly as given (HTML entities, CJK, RTL, emoji, U+FFFD); the only thing
  refused is what SQLite cannot store as UTF-8 (lone surrogates from `\\ud800`-style escapes),
  and in cluster ids control characters (NUL, tabs, line breaks, DEL, C1): an id is a key
  people type, link and export, and a NUL in one broke re-import.
- The hot loop is plain Python over already-parsed lists: 100,000 clusters import in about
  3 s of CPU (bench/bench_import.py). Validation yields `ClusterRecord`s whose bare captions stay
  the parser's strings (no million `Sample`s); a JSON object or array is parsed with one
  json.loads, and only a file with a problem (or a repeated key) is walked member by member
  for its line numbers.

Formats (detected from the extension, then from the content for unknown extensions):
- luvdatacomp JSON: `{"Cluster_<n>": {"closest_samples": [...], "furthest_samples": [...]}}`
- JSON array or JSONL of objects with `cluster_id` (or `id`) and the two sample lists
- CSV with `cluster_id` (or `id`), `closest_samples`, `furthest_samples` (JSON arrays in cells)
- Parquet with list columns (list of strings or of structs with text/uid/url)
A sample is a caption string or `{"text": ..., "uid": ..., "url": ..., "clip_score": ...}`;
clusters may carry `size` (a non-negative integer), `dataset` (a dataset name) and `stats` (pool
evidence: an object of finite numbers, see `STATS_FIELDS`). CLIP scores are DataComp's
`clip_l14_similarity_score` cosines in [-1, 1]; NaN, infinities, booleans and strings are
refused at import with their place, so nothing downstream has to guess what a score means.

Datasets: `--dataset NAME` puts every cluster of the files in NAME; without it a cluster goes
in the dataset its record names, else in one named after its file's stem
(`cluster_samples.json` -> `cluster_samples`).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from math import isfinite
from pathlib import Path
from typing import Any

from clusterqc.model import Cluster, ClusterRecord, Sample
from clusterqc.store import ConflictError, DatasetError, ImportResult, Store, check_dataset_name, name_from_stem

ID_FIELDS = ("cluster_id", "id")
LIST_FIELDS = ("closest_samples", "furthest_samples")
SAMPLE_FIELDS = ("text", "uid", "url")
MAX_SIZE = 2**63 - 1  # SQLite INTEGER
# The per-cluster evidence `clusterqc cluster` writes (README "Cluster evidence"); other keys
# may hold any finite number, and every key starting with `clip_` is a cosine in [-1, 1].
STATS_FIELDS = ("size", "share", "clip_l14_mean", "clip_l14_q1", "clip_l14_median", "clip_l14_q3")
CLIP_PREFIX = "clip_"
DEMO_FILE = "demo_clusters.json"

JSON_EXTS = {".json"}
JSONL_EXTS = {".jsonl", ".ndjson"}
CSV_EXTS = {".csv"}
PARQUET_EXTS = {".parquet", ".pq"}
PARQUET_MAGIC = b"PAR1"


class IngestError(ValueError):
    """A problem in an input file: which file, where in it, and what is wrong."""

    def __init__(self, file: str | os.PathLike[str], where: str, why: str):
        self.file = str(file)
        self.where = where
        self.why = why
        super().__init__(f"{self.file}: {where}: {why}" if where else f"{self.file}: {why}")


# --------------------------------------------------------------------------- validation


class _Validator:
    """Turns parsed records into Clusters, raising IngestError that names the place."""

    def __init__(self, file: str, dataset: str | None, override: bool = False):
        self.file = file
        self.dataset = dataset  # the dataset of records that name none (or of all, with override)
        self.override = override
        self.seen: dict[str, _Place] = {}
        # Whether a lone surrogate can be in this input at all: readers clear it for JSON text
        # without a \uD800-\uDFFF escape (strict UTF-8 decoding cannot produce one otherwise).
        self.surrogates = True

    def fail(self, where: Any, why: str) -> IngestError:
        return IngestError(self.file, str(where), why)

    def cluster(self, where: _Place, cid: Any, record: Any) -> ClusterRecord:
        """Validate one cluster record; `where` names its place, `cid` its id as found."""
        if not isinstance(record, dict):
            raise self.fail(where, f"expected an object with {' and '.join(LIST_FIELDS)}, got {_kind(record)}")
        cid = self.cluster_id(where, cid)
        where.cid = cid
        closest = self.samples(where, "closest_samples", record.get("closest_samples", _MISSING))
        furthest = self.samples(where, "furthest_samples", record.get("furthest_samples", _MISSING))
        size = self.size(where, record.get("size"))
        dataset = self.dataset_name(where, record.get("dataset"))
        stats = record.get("stats")
        if stats is not None:
            stats = self.stats(where, stats)
            size = self.size_with_stats(where, size, stats)
        if cid in self.seen:
            raise self.fail(where, f"duplicate cluster id {cid!r} (first at {self.seen[cid]})")
        self.seen[cid] = where
        if dataset is None or self.override:
            dataset = self.dataset
        return ClusterRecord(cid, closest, furthest, size, dataset, stats)

    def cluster_id(self, where: object, cid: Any) -> str:
        if cid is _MISSING or cid is None:
            raise self.fail(where, f"missing cluster id (a {' or '.join(repr(f) for f in ID_FIELDS)} field)")
        if isinstance(cid, bool) or not isinstance(cid, (str, int)):
            raise self.fail(where, f"cluster id must be a string or integer, got {_kind(cid)}")
        cid = str(cid)
        if not cid.strip():
            raise self.fail(where, "cluster id is empty")
        bad = _CONTROL.search(cid)
        if bad:
            # A NUL or line break in an id breaks re-import, URLs, CSV exports and terminals.
            raise self.fail(
                where, f"cluster id {_short(cid)} contains the control character {bad.group()!a}"
                f" at character {bad.start() + 1}; ids must be printable text"
            )
        self.text(where, "cluster id", cid)
        return cid

    def samples(self, where: object, field: str, value: Any) -> list[str] | tuple[Sample, ...]:
        """The common case, a list of bare captions, is returned as is (see `ClusterRecord`)."""
        if value is _MISSING:
            raise self.fail(where, f"missing field {field!r}")
        if not isinstance(value, list):
            raise self.fail(where, f"{field} must be a list of samples, got {_kind(value)}")
        if not value:
            raise self.fail(where, f"{field} is empty (a cluster needs at least one sample)")
        if all(map(isinstance, value, _STR)) and (not self.surrogates or _utf8_ok("".join(value))):
            return value
        out = []
        for i, item in enumerate(value):
            if type(item) is str:
                out.append(Sample(self.text(where, f"{field}[{i}]", item)))
            else:
                out.append(self.sample_object(where, f"{field}[{i}]", item))
        return tuple(out)

    def sample_object(self, where: object, place: str, item: Any) -> Sample:
        if not isinstance(item, dict):
            raise self.fail(where, f"{place} must be a caption string or an object with 'text', got {_kind(item)}")
        text = item.get("text")
        if not isinstance(text, str):
            why = "missing 'text'" if text is None else f"'text' must be a string, got {_kind(text)}"
            raise self.fail(where, f"{place}: {why}")
        values = [self.text(where, f"{place}.text", text)]
        for key in ("uid", "url"):
            v = item.get(key)
            if v is not None and not isinstance(v, str):
                raise self.fail(where, f"{place}: {key!r} must be a string, got {_kind(v)}")
            values.append(None if v is None else self.text(where, f"{place}.{key}", v))
        score = item.get("clip_score")
        if score is not None:
            score = self.number(where, f"{place}.clip_score", score, -1.0, 1.0)
        return Sample(*values, score)

    def stats(self, where: object, value: Any) -> dict[str, float] | None:
        """A cluster's `stats`: an object of finite numbers; known fields in their ranges.

        A JSON string holding the object is accepted too (CSV cells, Parquet string columns).
        Keys with a null value are dropped (Parquet structs give every field); `{}` is no stats.
        """
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise self.fail(where, f"stats must be an object of numbers, got the string {_short(value)}") from None
        if not isinstance(value, dict):
            raise self.fail(where, f"stats must be an object of numbers, got {_kind(value)}")
        out: dict[str, float] = {}
        for key, v in value.items():
            if v is None:
                continue
            if not isinstance(key, str) or not key:
                raise self.fail(where, f"stats: key {_short(key)} must be a non-empty string")
            self.text(where, "stats key", key)
            if key == "size":
                if v is not None and isinstance(v, (bool, str)):
                    raise self.fail(where, f"stats.size must be a non-negative integer, got {_kind(v)} {_short(v)}")
                out[key] = self.size(where, v, "stats.size")
            elif key == "share":
                out[key] = self.number(where, "stats.share", v, 0.0, 1.0)
            elif key.startswith(CLIP_PREFIX):
                out[key] = self.number(where, f"stats.{key}", v, -1.0, 1.0)
            else:
                out[key] = self.number(where, f"stats.{key}", v)
        return out or None

    def size_with_stats(self, where: object, size: int | None, stats: dict[str, float] | None) -> int | None:
        """The cluster's size, taken from `stats.size` when the file gives only that one."""
        if not stats or "size" not in stats:
            return size
        if size is not None and size != stats["size"]:
            raise self.fail(where, f"size {size} differs from stats.size {stats['size']}")
        return int(stats["size"])

    def number(self, where: object, place: str, value: Any, low: float | None = None, high: float | None = None) -> float:
        """A finite number (int or float, never a boolean or a string), within [low, high] if given."""
        if type(value) is float:  # the common case first: one type check per score
            if not isfinite(value):
                raise self.fail(where, f"{place} must be a finite number, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"{place} must be a number, got {_kind(value)} {_short(value)}")
        elif isinstance(value, float) and not isfinite(value):  # a float subclass
            raise self.fail(where, f"{place} must be a finite number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            hint = (" (CLIP scores are cosines as in DataComp's clip_l14_similarity_score; divide"
                    " scores given x100 by 100)") if low == -1.0 and abs(value) <= 100 else ""
            raise self.fail(where, f"{place} must be between {low:g} and {high:g}, got {_short(value)}{hint}")
        return float(value) if low is not None else value

    def text(self, where: object, place: str, value: str) -> str:
        """Refuse only what cannot be stored as UTF-8; everything else is kept byte for byte."""
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise self.fail(
                where, f"{place}: contains a lone surrogate {ascii(bad)} at character {exc.start} (not valid Unicode)"
            ) from None
        return value

    def size(self, where: object, value: Any, name: str = "size") -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_SIZE:
                return int(value)  # Parquet/pandas turn int columns with gaps into floats
            raise self.fail(where, f"{name} must be a non-negative integer, got {_kind(value)} {_short(value)}")
        if not 0 <= value <= MAX_SIZE:
            raise self.fail(where, f"{name} must be a non-negative integer, got {_short(value)}")
        return value

    def dataset_name(self, where: object, value: Any) -> str | None:
        if value is None or value == "":
            return None  # an empty name is no name (CSV cannot tell the two apart)
        if not isinstance(value, str):
            raise self.fail(where, f"dataset must be a string, got {_kind(value)}")
        if self.override:
            return None  # --dataset decides; the record's own name is not used
        try:
            return check_dataset_name(value)
        except DatasetError as exc:
            raise self.fail(where, str(exc)) from None


class _Place:
    """Where a cluster sits in its file, formatted only when a message needs it (hot loop)."""

    __slots__ = ("kind", "n", "line", "cid")

    def __init__(self, kind: str, n: Any, line: int | None = None):
        self.kind, self.n, self.line, self.cid = kind, n, line, None

    def __str__(self) -> str:
        out = f"key {self.n!r}" if self.kind == "key" else f"{self.kind} {self.n}"
        if self.line is not None:
            out += f" (line {self.line})"
        if self.cid is not None and self.kind != "key":
            out += f" (cluster {self.cid!r})"
        return out


def _may_have_surrogates(json_text: str) -> bool:
    """False when no string parsed from this JSON text can hold a lone surrogate (no such escape)."""
    return "\\u" in json_text and _SURROGATE_ESCAPE.search(json_text) is not None


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
_STR = repeat(str)  # map(isinstance, items, _STR): a type check per item at C speed
# A \uD800-\uDFFF escape: the only way a JSON text decoded as strict UTF-8 yields a lone surrogate.
# C0 and C1 control characters (NUL, tab, line breaks, DEL, ...): never part of a cluster id.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _kind(value: Any) -> str:
    """A JSON-flavoured type name for messages: users wrote JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _record_id(record: Any) -> Any:
    if not isinstance(record, dict):
        return _MISSING
    for name in ID_FIELDS:
        if name in record:
            return record[name]
    return _MISSING


# --------------------------------------------------------------------------- decoding


def _decode(file: str, data: bytes) -> str:
    """Strict UTF-8 (a BOM is dropped); a bad byte is reported by line and byte offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise IngestError(
            file,
            f"line {line}, byte {exc.start}",
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {col}); save the file as UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _json_error(file: str, exc: Exception, at: str = "") -> IngestError:
    """A parse failure with the place a person can find; `at` overrides the place (CSV cells)."""
    if isinstance(exc, json.JSONDecodeError):
        if at:
            return IngestError(file, at, f"malformed JSON: {exc.msg} (character {exc.pos + 1})")
        return IngestError(file, f"line {exc.lineno}, column {exc.colno}", f"malformed JSON: {exc.msg}")
    if isinstance(exc, RecursionError):
        return IngestError(file, at or "line 1", "JSON nested too deeply")
    return IngestError(file, at or "line 1", f"malformed JSON: {_first_line(exc)}")  # e.g. a 5000-digit number


def _loads(file: str, text: str, at: str = "") -> Any:
    """json.loads whose failures are IngestErrors with a line/column (or `at`)."""
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise _json_error(file, exc, at) from None


def _iter_top_level(file: str, text: str) -> Iterator[tuple[str | None, int, Any]]:
    """Walk a top-level JSON object or array member by member: (key or None, line, value).

    Each value is parsed by the C decoder; walking the top level ourselves is what lets a
    duplicate cluster key be reported (json.loads keeps the last one silently) and gives each
    cluster its line, at no measurable cost.
    """
    pos = _WS.match(text, 0).end()
    opener = text[pos : pos + 1]
    closer = "}" if opener == "{" else "]"
    pos = _WS.match(text, pos + 1).end()
    if text[pos : pos + 1] == closer:
        pos = _WS.match(text, pos + 1).end()
        if pos != len(text):
            raise _json_error(file, json.JSONDecodeError("Extra data", text, pos))
        return
    line, counted = 1, 0
    while True:
        key = None
        line += text.count("\n", counted, pos)  # incremental: whole file counted once
        counted = pos
        if opener == "{":
            if text[pos : pos + 1] != '"':
                raise _json_error(file, json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos))
            try:
                key, pos = json.decoder.scanstring(text, pos + 1)
            except (ValueError, RecursionError) as exc:
                raise _json_error(file, exc) from None
            pos = _WS.match(text, pos).end()
            if text[pos : pos + 1] != ":":
                raise _json_error(file, json.JSONDecodeError("Expecting ':' delimiter", text, pos))
            pos = _WS.match(text, pos + 1).end()
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:
            raise _json_error(file, exc) from None
        yield key, line, value
        pos = _WS.match(text, pos).end()
        sep = text[pos : pos + 1]
        if sep == closer:
            pos = _WS.match(text, pos + 1).end()
            if pos != len(text):
                raise _json_error(file, json.JSONDecodeError("Extra data", text, pos))
            return
        if sep != ",":
            raise _json_error(file, json.JSONDecodeError(f"Expecting ',' delimiter or '{closer}'", text, pos))
        pos = _WS.match(text, pos + 1).end()


# --------------------------------------------------------------------------- formats


def _read_json(file: str, text: str, v: _Validator) -> list[ClusterRecord]:
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise IngestError(file, "line 1", "file is empty")
    first = stripped[:1]
    if first == "{" and _first_key(stripped) in (*ID_FIELDS, *LIST_FIELDS):
        # One cluster record, or JSONL saved as .json (several objects, one per line).
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":
                return _read_jsonl(file, text, v)
            raise _json_error(file, exc) from None
        except (ValueError, RecursionError) as exc:
            raise _json_error(file, exc) from None
        return [v.cluster(_Place("line", 1), _record_id(value), value)]
    fast = _read_whole(text, v) if first in "{[" else None
    if fast is not None:
        out = fast
    elif first == "{":
        out = [v.cluster(_Place("key", k, line), k, rec) for k, line, rec in _iter_top_level(file, text)]
    elif first == "[":
        out = [
            v.cluster(_Place("item", i, line), _record_id(rec), rec)
            for i, (_, line, rec) in enumerate(_iter_top_level(file, text), start=1)
        ]
    else:
        value = _loads(file, text)  # raises for garbage; a bare number or string gets the message below
        raise IngestError(
            file, "line 1", f"expected a JSON object keyed by cluster id or a list of clusters, got {_kind(value)}"
        )
    if not out:
        raise IngestError(file, "line 1", "no clusters in file")
    return out


def _read_whole(text: str, v: _Validator) -> list[ClusterRecord] | None:
    """The common case of a top-level object or array: one json.loads, then validation.

    Skips the member-by-member walk's Python loop (0.2-0.4 s per 100,000 clusters). Returns
    None, with `v` reset, if the file has any problem or repeats a key anywhere: the caller then
    runs the walk, which reports the problem with its line (and accepts repeated keys inside a
    cluster as json.loads does).
    """
    repeated = False

    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        out = dict(pairs)
        if len(out) != len(pairs):
            repeated = True
        return out

    try:
        value = json.loads(text, object_pairs_hook=pairs_to_dict)
    except (ValueError, RecursionError):
        return None
    if repeated:
        return None
    try:
        if isinstance(value, dict):
            return [v.cluster(_Place("key", k), k, rec) for k, rec in value.items()]
        if isinstance(value, list):
            return [v.cluster(_Place("item", i), _record_id(rec), rec) for i, rec in enumerate(value, start=1)]
    except IngestError:
        v.seen.clear()
    return None


def _first_key(text: str) -> str | None:
    """The first property name of a JSON object text, or None if it has none or is malformed."""
    pos = _WS.match(text, 1).end()
    if text[pos : pos + 1] != '"':
        return None
    try:
        return json.decoder.scanstring(text, pos + 1)[0]
    except ValueError:
        return None


def _read_jsonl(file: str, text: str, v: _Validator) -> list[ClusterRecord]:
    return _jsonl_clusters(file, enumerate(text.split("\n"), start=1), v)


def _jsonl_clusters(file: str, lines: Iterable[tuple[int, str]], v: _Validator) -> list[ClusterRecord]:
    out = []
    for n, line in lines:
        if not line or line.isspace():
            continue
        try:  # _loads inlined: its place string would be built for every line, not only on error
            value = _DECODER.decode(line)
        except (ValueError, RecursionError) as exc:
            raise _json_error(file, exc, f"line {n}") from None
        v.surrogates = _may_have_surrogates(line)
        out.append(v.cluster(_Place("line", n), _record_id(value), value))
    if not out:
        raise IngestError(file, "line 1", "no clusters in file")
    return out


def _stream_lines(file: str, path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of a file read line by line: JSONL never sits in memory whole."""
    offset = 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IngestError(
                    file,
                    f"line {n}, byte {offset + exc.start}",
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8",
                ) from None
            offset += len(raw)
            yield n, (line[1:] if n == 1 and line.startswith("\ufeff") else line)


def _read_csv(file: str, text: str, v: _Validator) -> list[ClusterRecord]:
    """CSV rows are numbered as a spreadsheet shows them: the header is row 1."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # cells hold whole JSON arrays of captions
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header is None:
                raise IngestError(file, "row 1", "file is empty (expected a header row)")
            columns = _csv_columns(file, header)
            out = [
                _csv_cluster(file, v, reader.line_num, n, row, columns, header)
                for n, row in enumerate(reader, start=2)
                if row
            ]
        except csv.Error as exc:
            raise IngestError(file, f"line {reader.line_num}", f"malformed CSV: {exc}") from None
    finally:
        csv.field_size_limit(old_limit)
    if not out:
        raise IngestError(file, "row 2", "no clusters in file (only a header row)")
    return out


def _csv_columns(file: str, header: list[str]) -> dict[str, int]:
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        dup = next(h for h in names if names.count(h) > 1)
        raise IngestError(file, "row 1", f"duplicate column {dup!r}")
    columns = {h: i for i, h in enumerate(names)}
    id_col = next((f for f in ID_FIELDS if f in columns), None)
    missing = [f for f in LIST_FIELDS if f not in columns] + ([] if id_col else ["cluster_id"])
    if missing:
        raise IngestError(
            file, "row 1", f"missing column(s) {', '.join(missing)}; the header has {', '.join(names) or 'nothing'}"
        )
    columns["_id"] = columns[id_col]  # type: ignore[index]
    return columns


def _csv_cluster(
    file: str, v: _Validator, line: int, n: int, row: list[str], columns: dict[str, int], header: list[str]
) -> ClusterRecord:
    where = f"row {n}"
    if len(row) != len(header):
        raise IngestError(file, where, f"has {len(row)} cells, the header has {len(header)}")
    record: dict[str, Any] = {}
    for field in LIST_FIELDS:
        cell = row[columns[field]]
        record[field] = _loads(file, cell, at=f"{where}, column {field}")
    if "size" in columns and row[columns["size"]].strip():
        cell = row[columns["size"]].strip()
        try:
            record["size"] = int(cell)
        except ValueError:
            raise IngestError(file, where, f"size must be a non-negative integer, got {_short(cell)}") from None
    if "dataset" in columns and row[columns["dataset"]] != "":
        record["dataset"] = row[columns["dataset"]]
    if "stats" in columns and row[columns["stats"]].strip():
        record["stats"] = _loads(file, row[columns["stats"]], at=f"{where}, column stats")
    return v.cluster(_Place("row", n), row[columns["_id"]], record)


def _read_parquet(file: str, data: bytes, v: _Validator) -> list[ClusterRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, KeyError, MemoryError) as exc:
        raise IngestError(file, "file", f"not a readable Parquet file: {_first_line(exc)}") from None
    names = table.column_names
    id_col = next((f for f in ID_FIELDS if f in names), None)
    missing = [f for f in LIST_FIELDS if f not in names] + ([] if id_col else ["cluster_id"])
    if missing:
        raise IngestError(file, "schema", f"missing column(s) {', '.join(missing)}; it has {', '.join(names)}")
    wanted = [id_col, *LIST_FIELDS] + [c for c in ("size", "dataset", "stats") if c in names]
    try:
        cols = {c: table.column(c).to_pylist() for c in wanted}
    except (pa.ArrowException, ValueError, TypeError, OverflowError, KeyError) as exc:
        raise IngestError(file, "data", f"cannot read the columns: {_first_line(exc)}") from None
    if table.num_rows == 0:
        raise IngestError(file, "row 1", "no clusters in file")
    out = []
    for i in range(table.num_rows):
        record = {c: cols[c][i] for c in wanted[1:] if cols[c][i] is not None}
        out.append(v.cluster(_Place("row", i + 1), cols[id_col][i], record))  # type: ignore[index]
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- entry points


def detect_format(path: str | os.PathLike[str], head: bytes) -> str:
    """'json', 'jsonl', 'csv' or 'parquet': the extension decides, else the first bytes do."""
    ext = Path(path).suffix.lower()
    if ext in JSON_EXTS:
        return "json"
    if ext in JSONL_EXTS:
        return "jsonl"
    if ext in CSV_EXTS:
        return "csv"
    if ext in PARQUET_EXTS or head.startswith(PARQUET_MAGIC):
        return "parquet"
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first in (b"{", b"["):
        return "json"  # the JSON reader falls back to JSONL for one object per line
    return "csv"


def read_clusters(path: str | os.PathLike[str], dataset: str | None = None) -> list[Cluster]:
    """Read and validate one cluster file whole; raises IngestError naming the place on any problem.

    Each cluster's dataset is `dataset` if given, else its record's, else the file's stem.
    """
    with _bulk():
        return [r.to_cluster() for r in _read_one(path, dataset, _validator(path, dataset))]


def _validator(path: str | os.PathLike[str], dataset: str | None) -> _Validator:
    """The validator for one file: `dataset` (checked) for all its clusters, else the stem's name."""
    if dataset is not None:
        try:
            check_dataset_name(dataset)
        except DatasetError as exc:
            raise IngestError(str(path), "--dataset", str(exc)) from None
        return _Validator(str(path), dataset, override=True)
    return _Validator(str(path), name_from_stem(Path(path).stem))


def input_error(file: str, kind: str, exc: OSError, where: str = "file") -> IngestError:
    """The one line for an input that cannot be read: missing, a folder, or unreadable."""
    if isinstance(exc, FileNotFoundError):
        return IngestError(file, where, "no such file")
    if isinstance(exc, IsADirectoryError):
        return IngestError(file, where, f"is a directory, not {kind}")
    return IngestError(file, where, f"cannot read: {exc.strerror or exc}")


def read_input(file: str, kind: str, where: str = "file") -> bytes:
    """An input file's bytes, or an IngestError naming the file (see `input_error`)."""
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise input_error(file, kind, exc, where) from None


def _read_one(path: str | os.PathLike[str], dataset: str | None, v: _Validator) -> list[ClusterRecord]:
    file = str(path)
    try:
        if Path(path).suffix.lower() in JSONL_EXTS:
            return _jsonl_clusters(file, _stream_lines(file, path), v)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise input_error(file, "a cluster file", exc) from None
    fmt = detect_format(path, data[:8])
    if fmt == "parquet":
        return _read_parquet(file, data, v)
    if not data or data.isspace():  # not data.strip(): that copies the whole file
        raise IngestError(file, "line 1", "file is empty")
    text = _decode(file, data)
    del data
    reader = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv}[fmt]
    v.surrogates = _may_have_surrogates(text)
    return reader(file, text, v)


@contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic GC while building millions of small objects that form no cycles.

    Otherwise every few thousand allocations trigger a collection that walks the whole parsed
    file again: 2-3x slower imports. The previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_files(
    paths: Sequence[str | os.PathLike[str]], dataset: str | None = None,
    on_file: Callable[[str, int], None] | None = None,
) -> list[tuple[str, list[ClusterRecord]]]:
    """Read every file before anything is written; an id in two files is an error too.

    Gives validated `ClusterRecord`s (`.to_cluster()` makes a `Cluster`) for `write_clusters`,
    each with its dataset set (see the module docstring). Two files may share ids when their
    clusters go in different datasets; within one dataset an id in two files is an error.
    `on_file(file, index)` is called before each file is read (the CLI's progress line).
    """
    if not paths:
        raise IngestError("(no file)", "", "give at least one cluster file")
    owner: dict[tuple[str | None, str], str] = {}
    out = []
    for index, path in enumerate(paths):
        file = str(path)
        if on_file is not None:
            on_file(file, index)
        with _bulk():
            clusters = _read_one(path, dataset, _validator(path, dataset))
        for c in clusters:
            if (c.dataset, c.id) in owner:
                raise IngestError(
                    file, f"cluster {c.id!r}",
                    f"duplicate cluster id in dataset {c.dataset!r}: also in {owner[(c.dataset, c.id)]}",
                )
        owner.update(((c.dataset, c.id), file) for c in clusters)
        out.append((file, clusters))
    return out


def write_clusters(
    store: Store, files: Sequence[tuple[str, Sequence[Cluster | ClusterRecord]]], replace: bool = False
) -> ImportResult:
    """One `import_clusters` call for all files, so the database sees all of them or none."""
    clusters = [c for _, cs in files for c in cs]
    sources = {(c.dataset, c.id): file for file, cs in files for c in cs}
    try:
        with _bulk():
            return store.import_clusters(clusters, source=None, replace=replace, sources=sources)
    except ConflictError as exc:
        conflicting = set(exc.ids)
        involved = {f for (_, cid), f in sources.items() if cid in conflicting}
        conflict_files = [f for f, _ in files if f in involved]
        more = len(exc.ids) - 1
        others = ", ".join(exc.ids[1:4]) + (", ..." if more > 3 else "")
        why = "already in the database with different content" + (f" (and {more} more: {others})" if more else "")
        raise IngestError(
            ", ".join(conflict_files), f"cluster {exc.ids[0]!r}", why + "; use --replace to overwrite"
        ) from exc


def import_files(
    store: Store, paths: Sequence[str | os.PathLike[str]], dataset: str | None = None, replace: bool = False
) -> ImportResult:
    """Read and validate all files, then write them in one transaction: all or nothing."""
    return write_clusters(store, read_files(paths, dataset), replace=replace)


def demo_path() -> Path:
    """The bundled demo clusters: data/ sits beside the package in the source tree."""
    path = Path(__file__).resolve().parent.parent / "data" / DEMO_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo cluster file {path} is missing; install clusterqc from its source tree "
            "(pip install -e .) so that data/ is present"
        )
    return path


__all__ = [
    "IngestError",
    "detect_format",
    "demo_path",
    "import_files",
    "read_clusters",
    "read_files",
    "write_clusters",
]
