"""Readers for the original luvdatacomp pipeline's outputs, as proposals under a judge name.

Teams arrive with earlier runs: the raw classifications JSON (`{cluster name: answer text}`)
and the CSV its regexes made of it (`Cluster,Reason,Classification`). Bringing those in as
proposals lets reviewers start from answers already paid for. Raw answers go through our own
parser (so the old regexes' silent misreadings are not inherited); a CSV row whose
classification is empty or unknown becomes an unparsed proposal, never a guessed verdict.

Structural problems (not JSON, wrong columns, duplicate clusters) raise IngestError naming
the file and the place; nothing is returned, so nothing is half-imported.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from clusterqc.ingest import IngestError
from clusterqc.model import Proposal
from clusterqc.parse import parse_answer, parse_verdict

IMPORTED_VERSION = "imported"
CSV_COLUMNS = ("Cluster", "Reason", "Classification")
# Some runs stored each answer as an object; these keys hold the model's text.
_TEXT_KEYS = ("raw_response", "response", "answer", "raw", "text", "content", "output")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise IngestError(path, "", "no such file") from None
    except UnicodeDecodeError as exc:
        raise IngestError(path, f"byte {exc.start}", "not UTF-8 text") from None
    except OSError as exc:
        raise IngestError(path, "", f"cannot read ({exc.strerror or exc})") from None


def _no_duplicates(path: Path) -> Any:
    """A json object_pairs_hook: a cluster named twice is an error, not a silent overwrite."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise IngestError(path, f"key {key!r}", "appears twice")
            out[key] = value
        return out

    return hook


def _answer_text(path: Path, name: str, value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, dict):
        for key in _TEXT_KEYS:
            if isinstance(value.get(key), str):
                return value[key]
    raise IngestError(
        path, f"key {name!r}", f"expected the model's answer text, got {type(value).__name__}"
    )


def read_raw_classifications(path: str | Path, judge: str) -> list[Proposal]:
    """`{cluster name: answer text}` -> one proposal per cluster, each answer parsed by parse_answer."""
    path = Path(path)
    text = _read_text(path)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates(path))
    except json.JSONDecodeError as exc:
        raise IngestError(path, f"line {exc.lineno} column {exc.colno}", f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise IngestError(path, "top level", f"expected an object {{cluster name: answer text}}, got {type(data).__name__}")
    proposals = []
    for name, value in data.items():
        if not name.strip():
            raise IngestError(path, "a key", "empty cluster name")
        raw = _answer_text(path, name, value)
        result = parse_answer(raw)
        proposals.append(
            Proposal(name.strip(), judge, IMPORTED_VERSION, result.verdict, result.reason, raw, result.error)
        )
    return proposals


def _columns(path: Path, header: list[str] | None) -> dict[str, int]:
    """Column positions by name, matched case- and space-insensitively."""
    if not header:
        raise IngestError(path, "line 1", f"empty file (expected a header {','.join(CSV_COLUMNS)})")
    index = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in CSV_COLUMNS if c.lower() not in index]
    if missing:
        raise IngestError(
            path, "line 1", f"missing column {', '.join(missing)} (expected {','.join(CSV_COLUMNS)}; found {','.join(header)})"
        )
    return {c: index[c.lower()] for c in CSV_COLUMNS}


def read_parsed_csv(path: str | Path, judge: str) -> list[Proposal]:
    """`Cluster,Reason,Classification` rows -> proposals; unknown classifications stay unparsed."""
    path = Path(path)
    rows = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        cols = _columns(path, next(rows, None))
        proposals: list[Proposal] = []
        seen: dict[str, int] = {}
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            proposals.append(_csv_proposal(path, row, rows.line_num, cols, seen, judge))
    except csv.Error as exc:
        raise IngestError(path, f"line {rows.line_num}", f"not valid CSV ({exc})") from None
    return proposals


def _csv_proposal(
    path: Path, row: list[str], line: int, cols: dict[str, int], seen: dict[str, int], judge: str
) -> Proposal:
    if len(row) <= max(cols.values()):
        raise IngestError(path, f"line {line}", f"{len(row)} fields, expected at least {max(cols.values()) + 1}")
    cluster = row[cols["Cluster"]].strip()
    if not cluster:
        raise IngestError(path, f"line {line}", "empty Cluster")
    if cluster in seen:
        raise IngestError(path, f"line {line}", f"cluster {cluster!r} already on line {seen[cluster]}")
    seen[cluster] = line
    reason = row[cols["Reason"]].strip()
    value = row[cols["Classification"]]
    verdict, error = parse_verdict(value)
    raw = f"Reason: {reason}\nClassification: {value.strip()}"
    return Proposal(cluster, judge, IMPORTED_VERSION, verdict, reason, raw, error and f"line {line}: {error}")
