"""Benchmark the exports: the DataComp uid subset at pool scale and the label export at 100k clusters.

    /work/venv/bin/python bench/bench_export.py            # 12.8M uids, 100,000 clusters (~8 min, 2 cores)
    /work/venv/bin/python bench/bench_export.py --rows 1000000 --clusters 10000   # quick look

Every timing is best of --repeats (default 3), as wall and CPU seconds (CPU = this process's
user + system time, or the child's from wait4): the machine may be shared, and CPU time is what
an idle core would need. Ours and the baseline alternate within each repeat, in this process,
so load hits both alike. The 1-minute load average is printed with each section.

1. uid subset. A synthetic assignments CSV (`uid,cluster_label`, 1,300 clusters like the
   luvdatacomp pipeline's) with --rows random 32-hex-digit uids; 60% of the clusters are
   reviewed Acceptable.
   - `clusterqc export-uids` end to end in a child process: wall, CPU and peak RSS (ru_maxrss).
   - end to end in process, ours (`build_subset`) against the original pipeline's method on
     the same file: the same pyarrow batches and the same cluster filter, then the kept uids
     as Python strings (`to_pylist`, as pandas would have handed them over) and
     `np.array([(int(u[:16],16), int(u[16:32],16)) ...], "u8,u8")` per batch, then `np.sort`.
   - conversion + sort of all --rows uids, both at full size (nothing scaled): ours
     (uid_keys + sort_keys) against the per-uid conversion + `np.sort`; the Python strings are
     made beforehand, per batch, outside the reference's timer (generous to the reference).
     Both results must be identical.
2. CLIP-score cut (`--only clip`). A synthetic DataComp-layout assignments Parquet (uid,
   cluster_id, distance, clip_l14_similarity_score, clip_b32_similarity_score; --rows rows,
   1,300 clusters, scores rounded to 4 decimals so the cut has ties): `clusterqc export-uids`
   plain and with `--clip-top 0.3` in child processes, alternating within each repeat, median
   and best of --repeats; the target is the cut run within 1.5x of the plain one. Then
   `clusterqc check-subset` of the cut subset against the same file.
3. label export. --clusters clusters, each with one parsed proposal and one review (a tenth
   with a second reviewer); `export_labels` to CSV, JSONL and Parquet. The target is absolute
   (under 2 s); for scale, the per-cluster N+1 queries a naive exporter would make
   (store.labels / proposals_for per cluster), run on a hundredth and scaled.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clusterqc.export import FORMATS, export_labels
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store
from clusterqc.subset import build_subset, cluster_verdicts, iter_assignments, reference_pairs, sort_keys, uid_keys

N_POOL_CLUSTERS = 1300
HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint8).reshape(256, 2)


class Best:
    """Best (lowest) wall and CPU seconds over repeats of one measured thing."""

    def __init__(self) -> None:
        self.wall = float("inf")
        self.cpu = float("inf")

    def add(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)

    def __str__(self) -> str:
        return f"{self.wall:.2f} s wall / {self.cpu:.2f} s CPU"


def measure(best: Best, fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn once, add its wall and CPU seconds (this process, all threads) to `best`."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    best.add(time.perf_counter() - wall, time.process_time() - cpu)
    return out


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores"


# --------------------------------------------------------------------------- uid subset


def random_uids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """n random 32-hex-digit uids as DataComp writes them (vectorised hex, no Python loop)."""
    hexed = HEX_PAIRS[rng.integers(0, 256, size=(n, 16), dtype=np.uint8)].reshape(n, 32)
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed.tobytes()))


def write_assignments(path: Path, rows: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """Random uids and cluster labels, written in chunks (vectorised hex, no Python loop)."""
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        uids = random_uids(rng, n)
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


def run_cli(db: Path, assignments: Path, out: Path, *extra: str) -> tuple[float, float, float, str]:
    """`clusterqc export-uids` in a child: (wall seconds, CPU seconds, peak RSS MiB, its output)."""
    cmd = [sys.executable, "-m", "clusterqc", "export-uids", "--db", str(db), "--assignments", str(assignments),
           "--out", str(out), *extra]
    return run_child(cmd)


def run_child(cmd: list[str]) -> tuple[float, float, float, str]:
    """A command in a child: (wall seconds, CPU seconds, peak RSS MiB, its output)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd[2:4])} failed:\n{output}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output


def kept_labels(db: Path) -> pa.Array:
    """The integer labels n of the clusters labelled Acceptable (named `Cluster_<n>`)."""
    with Store(db) as store:
        verdicts = cluster_verdicts(store, include_unreviewed=False)
    return pa.array(sorted(int(c.split("_")[1]) for c, v in verdicts.items() if v == Verdict.ACCEPTABLE.value),
                    type=pa.int64())


def reference_subset(path: Path, kept: pa.Array) -> np.ndarray:
    """The original pipeline's method on the same batches: filter, Python strings, per-uid ints, sort."""
    parts = []
    for _, uids, labels, _ in iter_assignments(path):
        mask = pc.is_in(pc.cast(labels, pa.int64()), value_set=kept)
        parts.append(reference_pairs(pc.filter(uids, mask).to_pylist()))
    return np.sort(np.concatenate(parts))


def reference_full(strings: list[list[str]], conv: Best, sort: Best) -> np.ndarray:
    """Per-uid conversion of every batch (strings made beforehand) and one np.sort, timed apart."""
    wall, cpu = time.perf_counter(), time.process_time()
    parts = [reference_pairs(batch) for batch in strings]
    conv.add(time.perf_counter() - wall, time.process_time() - cpu)
    return measure(sort, lambda: np.sort(np.concatenate(parts)))


def ours_full(chunks: list[pa.Array], decode: Best, sort: Best) -> np.ndarray:
    keys = measure(decode, lambda: [uid_keys(c) for c in chunks])
    return measure(sort, sort_keys, keys)


def bench_uids(work: Path, rows: int, repeats: int) -> list[str]:
    csv_path, db, out = work / "assignments.csv", work / "pool.db", work / "subset.npy"
    gen = Best()
    measure(gen, write_assignments, csv_path, rows)
    pool_store(db)
    kept = kept_labels(db)
    lines = [f"- pool: {rows:,} uids in {N_POOL_CLUSTERS} clusters, CSV {csv_path.stat().st_size / 2**20:,.0f} MiB"
             f" (generated in {gen.wall:.1f} s); 60% of clusters reviewed Acceptable; {load()}"]

    cli, rss, output = Best(), 0.0, ""
    for _ in range(repeats):
        wall, cpu, peak, output = run_cli(db, csv_path, out)
        cli.add(wall, cpu)
        rss = max(rss, peak)
    subset = np.load(out)
    lines.append(f"- `clusterqc export-uids` end to end (child process, incl. Python start): **{cli}**,"
                 f" peak RSS **{rss:,.0f} MiB** (largest of {repeats}); {len(subset):,} uids kept")

    ours_e2e, ref_e2e = Best(), Best()
    with Store(db) as store:
        for _ in range(repeats):
            res = measure(ours_e2e, build_subset, store, csv_path)
            ref = measure(ref_e2e, reference_subset, csv_path, kept)
            assert np.array_equal(res.uids, ref) and np.array_equal(res.uids, subset), "end-to-end results differ"
    del ref, res
    lines.append(f"- end to end in process, same file and batches: ours {ours_e2e} vs original method {ref_e2e}"
                 f" -> **{ref_e2e.wall / ours_e2e.wall:.1f}x** wall, **{ref_e2e.cpu / ours_e2e.cpu:.1f}x** CPU; {load()}")

    read = Best()
    chunks = measure(read, lambda: [uids for _, uids, _, _ in iter_assignments(csv_path)])
    strings = [c.to_pylist() for c in chunks]
    decode, sort, ref_conv, ref_sort = Best(), Best(), Best(), Best()
    for _ in range(repeats):
        ours = ours_full(chunks, decode, sort)
        ref = reference_full(strings, ref_conv, ref_sort)
        assert np.array_equal(ours, ref), "full-size results differ"
        del ours, ref
    ours_w, ours_c = decode.wall + sort.wall, decode.cpu + sort.cpu
    ref_w, ref_c = ref_conv.wall + ref_sort.wall, ref_conv.cpu + ref_sort.cpu
    lines += [
        f"- all {rows:,} uids, full size (pyarrow read of the uid column alone {read}):",
        f"  - conversion: ours {decode} vs per-uid `int(u, 16)` {ref_conv}"
        f" -> **{ref_conv.wall / decode.wall:.0f}x** wall, **{ref_conv.cpu / decode.cpu:.0f}x** CPU",
        f"  - sort: ours (uint64 prefix sort + tie fix) {sort} vs `np.sort` of the `u8,u8` array {ref_sort}",
        f"  - conversion + sort: ours {ours_w:.2f} s wall / {ours_c:.2f} s CPU vs {ref_w:.2f} s wall / {ref_c:.2f} s CPU"
        f" -> **{ref_w / ours_w:.1f}x** wall, **{ref_c / ours_c:.1f}x** CPU; {load()}",
        f"- CLI output: `{' / '.join(line.strip() for line in output.strip().splitlines())}`",
    ]
    return lines


# --------------------------------------------------------------------------- CLIP-score cut


def write_datacomp_assignments(path: Path, rows: int, seed: int = 1, chunk: int = 2_000_000) -> None:
    """DataComp's assignments layout, written in chunks; cluster ids are the store's names."""
    rng = np.random.default_rng(seed)
    names = pa.array([f"Cluster_{i}" for i in range(N_POOL_CLUSTERS)])
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        uids = random_uids(rng, n)
        clusters = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, N_POOL_CLUSTERS, size=n), pa.int32()), names)
        l14 = np.round(rng.normal(0.25, 0.05, size=n), 4)
        table = pa.table({"uid": uids, "cluster_id": clusters, "distance": rng.random(n, dtype=np.float32),
                          "clip_l14_similarity_score": l14, "clip_b32_similarity_score": l14 - 0.01})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def median(values: list[float]) -> float:
    return float(np.median(values))


def bench_clip(work: Path, rows: int, repeats: int) -> list[str]:
    path, db = work / "assignments.parquet", work / "pool.db"
    gen = Best()
    measure(gen, write_datacomp_assignments, path, rows)
    if not db.exists():
        pool_store(db)
    lines = [f"- pool: {rows:,} rows in DataComp's layout, {N_POOL_CLUSTERS} clusters, Parquet"
             f" {path.stat().st_size / 2**20:,.0f} MiB (generated in {gen.wall:.1f} s); {load()}"]
    runs: dict[str, list[tuple[float, float, float]]] = {"plain": [], "clip": []}
    outputs = {}
    for _ in range(repeats):
        for name, extra in (("plain", ()), ("clip", ("--clip-top", "0.3"))):
            wall, cpu, rss, outputs[name] = run_cli(db, path, work / f"{name}.npy", *extra)
            runs[name].append((wall, cpu, rss))
    for name in runs:
        walls, cpus = [r[0] for r in runs[name]], [r[1] for r in runs[name]]
        kept = len(np.load(work / f"{name}.npy", mmap_mode="r"))
        lines.append(f"- `export-uids{'' if name == 'plain' else ' --clip-top 0.3'}`: median {median(walls):.2f} s wall"
                     f" / {median(cpus):.2f} s CPU (best {min(walls):.2f} / {min(cpus):.2f}), peak RSS"
                     f" {max(r[2] for r in runs[name]):,.0f} MiB; {kept:,} uids kept")
    ratio_wall = median([r[0] for r in runs["clip"]]) / median([r[0] for r in runs["plain"]])
    ratio_cpu = median([r[1] for r in runs["clip"]]) / median([r[1] for r in runs["plain"]])
    lines.append(f"- **cut / plain: {ratio_wall:.2f}x wall, {ratio_cpu:.2f}x CPU** (medians; target <= 1.5x); {load()}")
    lines.append(f"- cut run's output: `{' / '.join(line.strip() for line in outputs['clip'].strip().splitlines())}`")
    check = [sys.executable, "-m", "clusterqc", "check-subset", str(work / "clip.npy"), "--assignments", str(path)]
    wall, cpu, rss, out = run_child(check)
    lines.append(f"- `check-subset clip.npy --assignments` (all {rows:,} pool uids): {wall:.2f} s wall / {cpu:.2f} s CPU,"
                 f" peak RSS {rss:,.0f} MiB: `{out.strip()}`")
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


def bench_labels(work: Path, n: int, repeats: int, label_db: Path | None) -> list[str]:
    db = work / "labels.db"
    built = ""
    if label_db and label_db.exists():
        shutil.copy(label_db, db)
    else:
        built = f" (built in {label_store(db, n):.0f} s)"
        if label_db:
            shutil.copy(db, label_db)
    lines = [f"- {n:,} clusters, all reviewed ({n // 10:,} twice), one parsed proposal each{built}; {load()}"]
    best = {fmt: Best() for fmt in FORMATS}
    with Store(db) as store:
        assert store.count_clusters() == n, f"{label_db} holds another number of clusters"
        for _ in range(repeats):
            for fmt in FORMATS:
                counts = measure(best[fmt], export_labels, store, work / f"labels.{fmt}", fmt)
                assert counts["rows"] == n
        ids = store.cluster_ids()[: max(n // 100, 1)]
        naive = Best()
        measure(naive, naive_export, store, ids)
    for fmt in FORMATS:
        size = (work / f"labels.{fmt}").stat().st_size / 2**20
        lines.append(f"- export {fmt}: **{best[fmt]}** ({size:.1f} MiB)")
    scaled = naive.wall * n / len(ids)
    lines.append(
        f"- for scale, one query per cluster: {scaled:.0f} s (measured {naive.wall:.2f} s on {len(ids):,}, scaled)"
        f" vs {best['csv'].wall:.2f} s -> **{scaled / best['csv'].wall:.0f}x**; {load()}"
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=12_800_000, help="uids in the synthetic pool")
    ap.add_argument("--clusters", type=int, default=100_000, help="clusters for the label export")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the best is shown")
    ap.add_argument("--only", choices=["uids", "clip", "labels"], default=None, help="run one section only")
    ap.add_argument("--label-db", type=Path, default=None,
                    help="reuse this label database if it exists, else build it there (building takes ~2 min)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        work = Path(tmp)
        if args.only in (None, "uids"):
            print("### uid subset (`clusterqc export-uids`)", flush=True)
            print("\n".join(bench_uids(work, args.rows, args.repeats)), flush=True)
        if args.only in (None, "clip"):
            print("\n### CLIP-score cut (`clusterqc export-uids --clip-top 0.3`)", flush=True)
            print("\n".join(bench_clip(work, args.rows, args.repeats)), flush=True)
        if args.only in (None, "labels"):
            print("\n### label export (`clusterqc export`)", flush=True)
            print("\n".join(bench_labels(work, args.clusters, args.repeats, args.label_db)))


if __name__ == "__main__":
    main()
