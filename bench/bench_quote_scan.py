"""What the unterminated-quote check (issue 11, item 10) adds to reading an assignments CSV.

    /work/venv/bin/python bench/bench_quote_scan.py                 # 4M rows, 5 repeats
    /work/venv/bin/python bench/bench_quote_scan.py --rows 1000000  # quick look

pyarrow reads a quoted field that is never closed to the end of the file, silently swallowing
every later row, so `iter_assignments` hands pyarrow the file through `subset._QuoteCounter`,
which counts the double quotes of every block pyarrow reads. This measures, in one process and
alternating within each repeat, streaming every batch of a synthetic assignments CSV (the
bench_export layout: `uid,cluster_label`, 1,300 clusters) with the same pyarrow options
(a) from the path, pyarrow's own file reader (the code before the check) and (b) through the
counting reader; and, for scale, the whole `build_subset` (which includes (b)).
Reported: medians of --repeats, and the ratio (b) / (a).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import load, pool_store, write_assignments

from clusterqc.store import Store
from clusterqc.subset import CSV_BLOCK_BYTES, _QuoteCounter, build_subset


def stream(source: Any) -> int:
    """Every batch of the CSV with iter_assignments' options; returns the rows read."""
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=["uid", "cluster_label"],
            column_types={"uid": pa.string(), "cluster_label": pa.string()},
            strings_can_be_null=False,
        ),
    )
    return sum(batch.num_rows for batch in reader)


def counted(path: Path) -> int:
    counter = _QuoteCounter(path)
    try:
        rows = stream(counter)
    finally:
        counter.close()
    assert counter.quotes % 2 == 0
    return rows


def timed(fn: Callable[[], Any], into: list[float]) -> Any:
    t = time.perf_counter()
    out = fn()
    into.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path, db = work / "assign.csv", work / "pool.db"
        write_assignments(csv_path, args.rows)
        pool_store(db)
        plain: list[float] = []
        counting: list[float] = []
        full: list[float] = []
        with Store(db) as store:
            build_subset(store, csv_path)  # warm the page cache and imports
            for _ in range(args.repeats):
                assert timed(lambda: stream(str(csv_path)), plain) == args.rows
                assert timed(lambda: counted(csv_path), counting) == args.rows
                timed(lambda: build_subset(store, csv_path), full)
        a, b, f = (statistics.median(x) for x in (plain, counting, full))
        print(f"rows {args.rows:,}, file {csv_path.stat().st_size / 2**20:.0f} MiB, repeats {args.repeats}, {load()}")
        print(f"(a) pyarrow from the path:        median {a:.3f} s")
        print(f"(b) through the quote counter:    median {b:.3f} s")
        print(f"ratio (b) / (a): {b / a:.2f}; (b) - (a) = {b - a:+.3f} s, {(b - a) / f:+.1%} of build_subset ({f:.3f} s)")


if __name__ == "__main__":
    main()
