"""Labels leave the tool: one row per cluster as CSV (for people), JSONL or Parquet (for code).

Why it is built this way:
- One SQL query (`Store.export_rows`) joins clusters, standing labels and the model verdict,
  so 100,000 clusters export in well under two seconds; pandas / pyarrow write the formats.
- The label is the cluster's latest standing decision (`Store.cluster_label`). The model
  verdict is the latest *parsed* proposal of any judge, preferring the active prompt version
  (setting `active_prompt`, a version hash or prompt name) when that version answered the cluster:
  the model that would label the clusters nobody reviews is the one whose answer we show.
- By default only reviewed clusters are exported. `include_unreviewed` adds clusters that only
  the model labelled (`label_source = model_only`); a cluster with neither a review nor a
  parsed proposal has no label and is never exported.
- CSV cells are neutralised against formula injection (OWASP "CSV Injection"): a text cell
  beginning with = + - @, a tab or a carriage return (or their full-width forms, which some
  spreadsheet programs also evaluate) gets a leading apostrophe. JSONL and Parquet are for
  code and keep text byte for byte.
- Files are written to a temporary name and renamed, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clusterqc.store import Store

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
MIME = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
ACTIVE_PROMPT_SETTING = "active_prompt"
# Literal characters (RE2 has no \\u escapes): = + - @ tab CR and the full-width = + - @.
FORMULA_START = "^[=+\\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]"
REVIEWER_SEPARATOR = "; "


class ExportError(ValueError):
    """A user mistake in an export request (unknown format, unwritable path)."""


def active_prompt_version(store: Store) -> str | None:
    """The prompt version whose answers the export prefers, from the `active_prompt` setting."""
    active = store.get_setting(ACTIVE_PROMPT_SETTING)
    if not active:
        return None
    prompt = store.get_prompt(active)
    return prompt["version"] if prompt else active


def export_frame(store: Store, include_unreviewed: bool = False) -> pd.DataFrame:
    """The export table: one row per cluster in natural id order, columns `Store.EXPORT_COLUMNS`."""
    rows = store.export_rows(include_unreviewed, active_prompt_version(store))
    df = pd.DataFrame.from_records(rows, columns=list(Store.EXPORT_COLUMNS))
    # One parse of all the JSON arrays at once instead of one json.loads per row.
    df["reviewers"] = pd.Series(json.loads("[" + ",".join(df["reviewers"]) + "]"), index=df.index, dtype=object)
    df["n_reviews"] = df["n_reviews"].astype("int64")
    df["agrees"] = df["agrees"].astype("boolean")
    for col in ("cluster_id", "label", "label_source", "decided_at", "model_verdict", "model_reason",
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
    table = pa.Table.from_pandas(df, preserve_index=False)
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


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    target = Path(path)
    if not target.parent.is_dir():
        raise ExportError(f"{target}: folder {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_labels(
    store: Store, out: str | os.PathLike[str], fmt: str | None = None, include_unreviewed: bool = False
) -> dict[str, Any]:
    """Write the export file; returns counts for the caller to report."""
    fmt = infer_format(out, fmt)
    df = export_frame(store, include_unreviewed)
    write_atomic(out, to_bytes(df, fmt))
    reviewed = int((df["label_source"] == "reviewed").sum())
    return {
        "rows": len(df),
        "reviewed": reviewed,
        "model_only": len(df) - reviewed,
        "clusters": store.count_clusters(),
        "format": fmt,
    }
