"""Benchmark the exports: the DataComp uid subset at pool scale and the label export at 100k clusters.

    /work/venv/bin/python bench/bench_export.py            # 12.8M uids, 100,000 clusters (~3 min, 2 cores)
    /work/venv/bin/python bench/bench_export.py --rows 1000000 --clusters 10000   # quick look

What is measured (everything in this one process or its child, against baselines run here):
1. uid subset. A synthetic assignments CSV (`uid,cluster_label`, 1,300 clusters like the
   luvdatacomp pipeline's) with --rows random 32-hex-digit uids.
   - `clusterqc export-uids` end to end in a child process: wall time and peak RSS (ru_maxrss
     from wait4), i.e. Python start, streaming the CSV, decoding, filtering, sorting, np.save.
   - conversion + sort alone, in process, ours (uid_keys + sort_keys) against the original
     pipeline's per-uid `np.array([(int(u[:16],16), int(u[16:32],16)) ...], "u8,u8")` followed
     by `np.sort`. The reference runs on a --ref-sample subsample and is scaled linearly to
     --rows (its sort is n log n, so linear scaling flatters the reference). Both must agree
     on the subsample.
   - end to end against the reference: the same pyarrow read plus the reference conversion.
2. label export. --clusters clusters, each with one parsed proposal and one review (a tenth
   with a second reviewer); `export_labels` to CSV, JSONL and Parquet, timed; baseline: the
   per-cluster N+1 queries a naive exporter would make (store.labels / proposals_for per
   cluster), run on a hundredth and scaled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from clusterqc.export import export_labels
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store
from clusterqc.subset import iter_assignments, reference_pairs, sort_keys, uid_keys

N_POOL_CLUSTERS = 1300
HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint8).reshape(256, 2)


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def timed_cpu(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """(result, wall seconds, CPU seconds): CPU time shows the cost when other jobs share the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


# --------------------------------------------------------------------------- uid subset


def write_assignments(path: Path, rows: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """Random uids and cluster labels, written in chunks (vectorised hex, no Python loop)."""
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        hexed = HEX_PAIRS[rng.integers(0, 256, size=(n, 16), dtype=np.uint8)].reshape(n, 32)
        offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
        uids = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed.tobytes()))
        table = pa.table({"uid": uids, "cluster_label": rng.integers(0, N_POOL_CLUSTERS, size=n)})
        if writer is None:
            writer = pacsv.CSVWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def pool_store(path: Path) -> None:
    """1,300 clusters: 60% reviewed Acceptable, 30% Unacceptable, 10% unreviewed."""
    with Store(path) as store:
        store.import_clusters(
            [Cluster(f"Cluster_{i}", (Sample(f"c{i}"),), (Sample(f"f{i}"),)) for i in range(N_POOL_CLUSTERS)]
        )
        for i in range(N_POOL_CLUSTERS):
            if i % 10 < 6:
                store.decide(f"Cluster_{i}", "bench", Verdict.ACCEPTABLE)
            elif i % 10 < 9:
                store.decide(f"Cluster_{i}", "bench", Verdict.UNACCEPTABLE)


def run_cli(db: Path, assignments: Path, out: Path) -> tuple[float, float, float, str]:
    """`clusterqc export-uids` in a child: (wall seconds, peak RSS MiB, CPU seconds, its output)."""
    cmd = [sys.executable, "-m", "clusterqc", "export-uids", "--db", str(db), "--assignments", str(assignments),
           "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"export-uids failed:\n{output}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, output


def bench_uids(work: Path, rows: int, ref_sample: int) -> list[str]:
    csv_path, db, out = work / "assignments.csv", work / "pool.db", work / "subset.npy"
    _, t_gen = timed(write_assignments, csv_path, rows)
    pool_store(db)
    wall, rss, cpu, output = run_cli(db, csv_path, out)
    subset = np.load(out)

    # The same read the CLI does, then each conversion on the uid column.
    chunks, t_read = timed(lambda: [uids for _, uids, _, _ in iter_assignments(csv_path)])
    keys, t_decode = timed(lambda: [uid_keys(c) for c in chunks])
    ours, t_sort = timed(sort_keys, keys)
    del keys
    sample = pa.chunked_array(chunks).slice(0, ref_sample).to_pylist()
    del chunks
    ref, t_ref = timed(lambda: np.sort(reference_pairs(sample)))
    assert np.array_equal(ref, sort_keys([uid_keys(pa.array(sample))])), "reference and ours disagree"
    t_ref_full = t_ref * rows / len(sample)
    ours_conv = t_decode + t_sort
    lines = [
        f"- pool: {rows:,} uids in {N_POOL_CLUSTERS} clusters, CSV {csv_path.stat().st_size / 2**20:,.0f} MiB"
        f" (generated in {t_gen:.1f} s); 90% of clusters reviewed, {len(subset):,} uids kept",
        f"- `clusterqc export-uids` end to end (child process, incl. Python start): **{wall:.1f} s** wall"
        f" ({cpu:.1f} s CPU), peak RSS **{rss:,.0f} MiB**",
        f"- conversion + sort: ours {ours_conv:.2f} s (decode {t_decode:.2f} s, sort {t_sort:.2f} s) vs per-uid"
        f" reference {t_ref_full:.1f} s (measured {t_ref:.2f} s on {len(sample):,} uids, scaled x{rows / len(sample):.1f})"
        f" -> **{t_ref_full / ours_conv:.1f}x faster**",
        f"- end to end vs reference (same pyarrow read {t_read:.1f} s + reference conversion):"
        f" {t_read + t_ref_full:.1f} s vs {wall:.1f} s -> **{(t_read + t_ref_full) / wall:.1f}x faster**",
        f"- CLI output: `{' / '.join(line.strip() for line in output.strip().splitlines())}`",
    ]
    assert len(ours) == rows
    return lines


# --------------------------------------------------------------------------- label export


def label_store(path: Path, n: int) -> float:
    """n clusters, one parsed proposal each, all reviewed (a tenth twice); returns build seconds."""
    start = time.perf_counter()
    with Store(path) as store:
        ids = [f"Cluster_{i}" for i in range(n)]
        store.import_clusters([Cluster(c, (Sample(f"caption {c} ünïcode"),), (Sample(f"far {c}"),)) for c in ids])
        verdicts = [Verdict.ACCEPTABLE if i % 3 else Verdict.UNACCEPTABLE for i in range(n)]
        store.add_proposals(Proposal(c, "gpt", "v1", v, f"reason for {c}, with a comma") for c, v in zip(ids, verdicts))
        for i, c in enumerate(ids):
            store.decide(c, "ann", verdicts[i] if i % 7 else verdicts[i].other, note="=1+1" if i % 50 == 0 else "")
            if i % 10 == 0:
                store.decide(c, "bob", verdicts[i])
    return time.perf_counter() - start


def naive_export(store: Store, ids: list[str]) -> list[tuple]:
    """The N+1-query exporter a first version would write: one look-up per cluster."""
    rows = []
    for c in ids:
        labels = store.labels(c)
        parsed = [p for p in store.proposals_for(c) if p.verdict]
        rows.append((c, store.cluster_label(c), [label["reviewer"] for label in labels], parsed[-1] if parsed else None))
    return rows


def bench_labels(work: Path, n: int) -> list[str]:
    db = work / "labels.db"
    t_build = label_store(db, n)
    lines = [f"- {n:,} clusters, all reviewed ({n // 10:,} twice), one parsed proposal each (built in {t_build:.0f} s)"]
    with Store(db) as store:
        for fmt in ("csv", "jsonl", "parquet"):
            out = work / f"labels.{fmt}"
            counts, t, cpu = timed_cpu(export_labels, store, out, fmt)
            assert counts["rows"] == n
            lines.append(f"- export {fmt}: **{t:.2f} s** wall, {cpu:.2f} s CPU ({out.stat().st_size / 2**20:.1f} MiB)")
        ids = store.cluster_ids()[: max(n // 100, 1)]
        _, t_naive = timed(naive_export, store, ids)
        _, t_csv = timed(export_labels, store, work / "again.csv", "csv")
    scaled = t_naive * n / len(ids)
    lines.append(
        f"- baseline, one query per cluster: {scaled:.1f} s (measured {t_naive:.2f} s on {len(ids):,}, scaled)"
        f" vs one query + pandas CSV {t_csv:.2f} s -> **{scaled / t_csv:.0f}x**"
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=12_800_000, help="uids in the synthetic pool")
    ap.add_argument("--ref-sample", type=int, default=1_280_000, help="uids the slow reference converts")
    ap.add_argument("--clusters", type=int, default=100_000, help="clusters for the label export")
    ap.add_argument("--only", choices=["uids", "labels"], default=None, help="run one half only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        work = Path(tmp)
        if args.only != "labels":
            print("### uid subset (`clusterqc export-uids`)")
            print("\n".join(bench_uids(work, args.rows, min(args.ref_sample, args.rows))))
        if args.only != "uids":
            print("\n### label export (`clusterqc export`)")
            print("\n".join(bench_labels(work, args.clusters)))


if __name__ == "__main__":
    main()
