"""Labels leave the tool: one row per cluster as CSV (for people), JSONL or Parquet (for code).

Why it is built this way:
- One SQL query joins clusters, standing labels and the model verdict. The files
  (`export_labels`) come from `Store.export_json_lines`: SQLite writes each row as a JSON
  object, which is the JSONL file as is, and pyarrow's JSON reader turns the same lines into
  the table the CSV and Parquet writers take; no Python object is made per value, so 100,000
  clusters export in under a second of CPU (bench/bench_export.py). The page's DataFrame
  (`export_frame`) comes from the same query as plain rows (`Store.export_rows`).
- The label is the cluster's latest standing decision (`Store.cluster_label`). The model
  verdict is the latest *parsed* proposal of any judge, preferring the active prompt version
  (setting `active_prompt`, a version hash or prompt name) when that version answered the cluster:
  the model that would label the clusters nobody reviews is the one whose answer we show.
- By default only reviewed clusters are exported. `include_unreviewed` adds clusters that only
  the model labelled (`label_source = model_only`); a cluster with neither a review nor a
  parsed proposal has no label and is never exported.
- CSV cells are neutralised against formula injection (OWASP "CSV Injection"): a text cell
  whose first non-blank character (after spaces, NBSP, U+3000, ZWSP, BOM, line breaks, tabs)
  is = + - @ (or their full-width forms, which some spreadsheet programs also evaluate), or
  that begins with a tab or a carriage return, gets a leading apostrophe. JSONL and Parquet are for
  code and keep text byte for byte.
- Files are written to a temporary name and renamed, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from clusterqc.outputs import creation_mode, temp_prefix
from clusterqc.store import Store

FORMATS = ("csv", "jsonl", "parquet")
TEMP_SUFFIX = ".tmp"  # write_atomic's hidden temporary files: .NAME.<pid>.XXXX.tmp
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
MIME = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
ACTIVE_PROMPT_SETTING = "active_prompt"
# Spreadsheets skip leading blanks before reading a formula, so a cell is risky when its first
# character that is not blank is = + - @ (or their full-width forms), or when it starts with a
# tab or CR. "Blank" is every space and invisible separator a spreadsheet may drop: ASCII
# whitespace, NBSP, the U+2000-U+200B spaces, ZWSP, U+2028/2029, U+202F, U+205F, word joiner,
# U+3000 and the BOM. The pattern holds the characters themselves (RE2 takes no \\u escapes).
FORMULA_BLANKS = " \t\r\n\v\f\u0085\u00A0\u1680\u180E\u2000-\u200B\u2028\u2029\u202F\u205F\u2060\u3000\uFEFF"
FORMULA_START = f"^(?:[\t\r]|[{FORMULA_BLANKS}]*[=+\\-@\uFF1D\uFF0B\uFF0D\uFF20])"
REVIEWER_SEPARATOR = "; "
EXPORT_SCHEMA = pa.schema(
    [(name, pa.list_(pa.string()) if name == "reviewers" else pa.int64() if name == "n_reviews"
      else pa.bool_() if name == "agrees" else pa.string()) for name in Store.EXPORT_COLUMNS]
)
# U+2028/2029 are valid raw in JSON but end a line for some readers (Python's splitlines).
REVIEWED_MEMBER = '"label_source":"reviewed"'
JSON_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029"})


class ExportError(ValueError):
    """A user mistake in an export request (unknown format, unwritable path)."""


def active_prompt_version(store: Store) -> str | None:
    """The prompt version whose answers the export prefers, from the `active_prompt` setting."""
    active = store.get_setting(ACTIVE_PROMPT_SETTING)
    if not active:
        return None
    prompt = store.get_prompt(active)
    return prompt["version"] if prompt else active


def export_frame(store: Store, include_unreviewed: bool = False, dataset: str | None = None) -> pd.DataFrame:
    """The export table: one row per cluster (of every dataset, or of `dataset`), by dataset then
    natural id order, columns `Store.EXPORT_COLUMNS`."""
    rows = store.export_rows(include_unreviewed, active_prompt_version(store), dataset=dataset)
    df = pd.DataFrame.from_records(rows, columns=list(Store.EXPORT_COLUMNS))
    # One parse of all the JSON arrays at once instead of one json.loads per row.
    df["reviewers"] = pd.Series(json.loads("[" + ",".join(df["reviewers"]) + "]"), index=df.index, dtype=object)
    df["n_reviews"] = df["n_reviews"].astype("int64")
    df["agrees"] = df["agrees"].astype("boolean")
    for col in ("dataset", "cluster_id", "label", "label_source", "decided_at", "model_verdict", "model_reason",
                "judge", "prompt_version", "note"):
        df[col] = df[col].astype("string")
    return df


def neutralise_formulas(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A text column whose cells cannot start a spreadsheet formula (leading apostrophe added)."""
    risky = pc.match_substring_regex(column, FORMULA_START)
    quote, nothing = pa.scalar("'", column.type), pa.scalar("", column.type)
    return pc.if_else(risky, pc.binary_join_element_wise(quote, column, nothing), column)


def _csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV written by pyarrow (several times faster than pandas at 100,000 rows)."""
    return _table_csv_bytes(pa.Table.from_pandas(df, preserve_index=False))


def _table_csv_bytes(table: pa.Table) -> bytes:
    """CSV of an arrow table: lists joined with "; ", text cells neutralised against formulas."""
    columns = []
    for col in table.columns:
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.binary_join(col, REVIEWER_SEPARATOR)
        if pa.types.is_null(col.type):
            col = col.cast(pa.string())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = neutralise_formulas(col)
        columns.append(col)
    buf = io.BytesIO()
    pacsv.write_csv(pa.table(columns, names=table.column_names), buf)
    return buf.getvalue()


def _jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines).translate(JSON_LINE_BREAKS) + "\n").encode("utf-8") if lines else b""


def export_jsonl(store: Store, include_unreviewed: bool = False) -> bytes:
    """The JSONL export as SQLite wrote it: one JSON object per cluster and line."""
    return _jsonl(store.export_json_lines(include_unreviewed, active_prompt_version(store)))


def table_from_jsonl(data: bytes) -> pa.Table:
    """The export's JSONL parsed by pyarrow into `EXPORT_SCHEMA` columns."""
    if not data:
        return EXPORT_SCHEMA.empty_table()
    return pajson.read_json(
        io.BytesIO(data),
        parse_options=pajson.ParseOptions(explicit_schema=EXPORT_SCHEMA, unexpected_field_behavior="error"),
    ).select(EXPORT_SCHEMA.names)


def to_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """The export in `fmt`, as bytes (the Export page's download buttons)."""
    if fmt == "csv":
        return _csv_bytes(df)
    if fmt == "jsonl":
        if df.empty:
            return b""
        text = df.to_json(orient="records", lines=True, force_ascii=False)
        # U+2028/2029 are valid raw in JSON but end a line for some readers (Python's splitlines).
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def infer_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """`fmt` if given, else from the file extension."""
    if fmt:
        if fmt not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ExportError(f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; pass --format")
    return EXTENSIONS[suffix]


def write_atomic(path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.

    `data` is the bytes, or a function that writes to the open file (np.save for the uid
    subset), so large outputs need not be built in memory first. The file gets the mode the
    umask gives new files (not mkstemp's 0600), and a failure names `path`, never the hidden
    temporary file the user did not ask for.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise ExportError(f"{target}: folder {target.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise ExportError(f"{target}: cannot write in {target.parent} ({exc.strerror})") from None
    try:
        os.fchmod(fd, creation_mode())
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"{target}: {exc.strerror or exc}; nothing written") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _count_reviewed(lines: list[str]) -> int:
    """Lines whose label_source is "reviewed", without parsing them.

    Exact: inside a JSON string every quote is escaped (\\"), so the key-value text with bare
    quotes can only be the label_source member itself.
    """
    return sum(1 for line in lines if REVIEWED_MEMBER in line)


def export_file_bytes(
    store: Store, fmt: str, include_unreviewed: bool = False, dataset: str | None = None
) -> tuple[bytes, int, int]:
    """The export file in `fmt` straight from the store: (bytes, rows, reviewed rows)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    lines = store.export_json_lines(include_unreviewed, active_prompt_version(store), dataset=dataset)
    counts = len(lines), _count_reviewed(lines)
    jsonl = _jsonl(lines)
    del lines
    if fmt == "jsonl":
        return jsonl, *counts
    table = table_from_jsonl(jsonl)
    if fmt == "csv":
        return _table_csv_bytes(table), *counts
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue(), *counts


def export_labels(
    store: Store, out: str | os.PathLike[str], fmt: str | None = None, include_unreviewed: bool = False,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Write the export file (every dataset, or `dataset`); returns counts for the caller to report."""
    fmt = infer_format(out, fmt)
    data, rows, reviewed = export_file_bytes(store, fmt, include_unreviewed, dataset)
    write_atomic(out, data)
    return {
        "rows": rows,
        "reviewed": reviewed,
        "model_only": rows - reviewed,
        "clusters": store.count_clusters(dataset),
        "format": fmt,
    }
