"""import-decisions: labels made elsewhere (a MiniPile-style manual review, an older tool) as decisions.

Why it looks the way it does:
- The file is read and every row checked (known cluster, known label, one row per cluster)
  before the database is touched; the rows are then written by `Store.decide_many`, one
  transaction through the same path as a decision on the Review page, so the labels, review
  counts and the queue are derived exactly as for single decisions. All or nothing.
- Every problem is an `IngestError(file, "line N", why)`, the same one-line shape as `clusterqc
  import`, so a curator can open the file at that line.
- Importing the same file again changes nothing: a row whose verdict and note are already this
  reviewer's standing label is skipped instead of appending a duplicate decision.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clusterqc.ingest import IngestError, read_input
from clusterqc.model import Verdict
from clusterqc.store import Store

ID_COLUMN = "cluster_id"
LABEL_COLUMN = "label"
NOTE_COLUMN = "note"
MAX_NOTE_CHARS = 10_000


@dataclass(frozen=True)
class DecisionRow:
    """One validated row: the line it came from, for messages about it."""

    line: int
    cluster_id: str
    verdict: Verdict
    note: str


@dataclass(frozen=True)
class ImportSummary:
    read: int
    added: int
    unchanged: int
    dataset: str = ""


def _text(path: str) -> str:
    data = read_input(path, "a decisions file", where="")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IngestError(path, f"line {line}", "not valid UTF-8; save the file as UTF-8") from None
    return text.removeprefix("\ufeff")


def _is_jsonl(path: str, text: str) -> bool:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return True
    if suffix == ".csv":
        return False
    return text.lstrip().startswith("{")


def _csv_records(path: str, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise IngestError(path, "line 1", "file is empty")
        names = [h.strip().lower() for h in header]
        for column in (ID_COLUMN, LABEL_COLUMN):
            if column not in names:
                raise IngestError(path, "line 1", f"no {column!r} column (the header has {', '.join(map(repr, header))})")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(names):
                raise IngestError(path, f"line {reader.line_num}", f"{len(row)} cells but the header has {len(names)}")
            yield reader.line_num, dict(zip(names, row))
    except csv.Error as exc:
        raise IngestError(path, f"line {reader.line_num}", f"malformed CSV: {exc}") from None


def _jsonl_records(path: str, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise IngestError(path, f"line {n}", f"malformed JSON: {getattr(exc, 'msg', exc)}") from None
        if not isinstance(value, dict):
            raise IngestError(path, f"line {n}", "expected a JSON object with cluster_id and label")
        yield n, value


def _row(path: str, line: int, record: dict[str, object]) -> DecisionRow:
    where = f"line {line}"
    cluster_id, label, note = record.get(ID_COLUMN), record.get(LABEL_COLUMN), record.get(NOTE_COLUMN)
    if not isinstance(cluster_id, str) or not cluster_id.strip():
        raise IngestError(path, where, f"{ID_COLUMN} must be a non-empty string, got {cluster_id!r}")
    try:
        verdict = Verdict.parse(label) if isinstance(label, str) else None
    except ValueError:
        verdict = None
    if verdict is None:
        raise IngestError(path, where, f"unknown label {label!r} for {cluster_id.strip()!r} (expected Acceptable or Unacceptable)")
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise IngestError(path, where, f"note must be a string, got {type(note).__name__}")
    if len(note) > MAX_NOTE_CHARS:
        raise IngestError(path, where, f"note is {len(note)} characters long (at most {MAX_NOTE_CHARS})")
    return DecisionRow(line, cluster_id.strip(), verdict, note)


def read_decisions(path: str | Path) -> list[DecisionRow]:
    """Every row of a CSV or JSONL decisions file, validated; IngestError at the first bad one."""
    path = str(path)
    text = _text(path)
    records = _jsonl_records(path, text) if _is_jsonl(path, text) else _csv_records(path, text)
    rows: list[DecisionRow] = []
    first: dict[str, int] = {}
    for line, record in records:
        row = _row(path, line, record)
        if row.cluster_id in first:
            raise IngestError(path, f"line {line}", f"cluster {row.cluster_id!r} is already labelled on line {first[row.cluster_id]}")
        first[row.cluster_id] = line
        rows.append(row)
    if not rows:
        raise IngestError(path, "", "no decisions in file")
    return rows


def import_decisions(store: Store, path: str | Path, reviewer: str, dataset: str | None = None) -> ImportSummary:
    """Read, check against the store, then write every new decision in one transaction.

    The file's cluster ids are of one dataset (None: the only one; with several, the
    DatasetError lists them)."""
    if not reviewer or not reviewer.strip():
        raise ValueError("--reviewer must name who made these decisions")
    dataset = store.resolve_dataset(dataset)
    rows = read_decisions(path)
    known = store.known_cluster_ids((r.cluster_id for r in rows), dataset=dataset)
    for row in rows:
        if row.cluster_id not in known:
            raise IngestError(
                str(path), f"line {row.line}", f"unknown cluster {row.cluster_id!r} (not in dataset {dataset})"
            )
    standing = {
        label["cluster_id"]: (label["verdict"], label["note"])
        for label in store.labels(dataset=dataset)
        if label["reviewer"] == reviewer.strip()
    }
    new = [r for r in rows if standing.get(r.cluster_id) != (r.verdict.value, r.note)]
    if new:
        store.decide_many(reviewer, [(r.cluster_id, r.verdict, r.note) for r in new], dataset=dataset)
    return ImportSummary(read=len(rows), added=len(new), unchanged=len(rows) - len(new), dataset=dataset)
