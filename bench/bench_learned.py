"""Learned judge at scale: training on 1,000 labels, proposing for 100,000 clusters.

Usage: python bench/bench_learned.py [--clusters 100000] [--labels 1000] [--repeats 3]

Builds a store of N clusters of 10 real DataComp-small captions each (random draws from the
shared sample, seeded) and labels L of them with a rule the judge cannot see (the median CLIP
score of the cluster's 10 samples in the lowest 40%). Each measured phase runs in its own
fresh process, so its peak RSS (ru_maxrss) is its own:
- baseline: reading every cluster from the store (`iter_clusters`), the floor any judge pays;
- train: `train_from_store` (features, 5-fold out-of-fold predictions, final fit), L labels;
- propose_cold: `propose_all` for every cluster (features, predict, one transaction per chunk)
  with no offline-judge answers stored, so the offline signals are computed;
- propose: the same after the offline judge has answered for every cluster (what the app does
  on first start), so its stored evidence is read back instead (setup, not measured).
Reports medians over the repeats and the ratio to the baseline read.

`--against DIR` also runs the propose phase with the source tree in DIR (an older commit:
`git archive COMMIT | tar -x -C DIR`), turn by turn with this tree's on the same store, so
the before/after ratio comes from one run on one machine state.

Targets (issue 15): training on 1,000 labels under 10 s; proposing for 100,000 clusters
under 60 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "datacomp_small_sample.jsonl"
TSNE = ROOT / "tests" / "fixtures" / "datacomp_small_sample_tsne.jsonl"
CLIP = ROOT / "tests" / "fixtures" / "datacomp_small_clip_scores.csv"


def pool() -> tuple[list[str], np.ndarray]:
    """Captions and CLIP scores of the DataComp-small sample (fixtures carry both, same rows)."""
    captions = [json.loads(line)["caption"] for line in TSNE.open(encoding="utf-8")]
    clip = np.loadtxt(CLIP, delimiter=",", skiprows=1, usecols=1)
    return captions, clip


def build(db: Path, n: int, n_labels: int) -> None:
    from clusterqc.model import Cluster, Sample, Verdict
    from clusterqc.store import Store

    captions, clip = pool()
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(captions), size=(n, 10))
    clusters = [
        Cluster(f"Cluster_{i}", tuple(Sample(captions[j]) for j in row[:5]), tuple(Sample(captions[j]) for j in row[5:]),
                size=int(rng.integers(10, 10_000)))
        for i, row in enumerate(picks)
    ]
    medians = np.median(clip[picks[:n_labels]], axis=1)
    cut = np.percentile(medians, 40)
    with Store(db) as store:
        store.import_clusters(clusters)
        store.decide_many("bench", [
            (f"Cluster_{i}", Verdict.UNACCEPTABLE if m < cut else Verdict.ACCEPTABLE, "") for i, m in enumerate(medians)
        ])


def phase(name: str, db: Path) -> dict[str, float]:
    """One measured phase in this (fresh) process."""
    from clusterqc.judges import learned
    from clusterqc.store import Store

    store = Store(db)
    out: dict[str, float] = {}
    if name == "baseline":
        start = time.perf_counter()
        out["clusters"] = sum(1 for _ in store.iter_clusters())
        out["seconds"] = time.perf_counter() - start
    elif name == "train":
        start = time.perf_counter()
        model = learned.train_from_store(store)
        out["seconds"] = time.perf_counter() - start
        out["labels"] = len(model.labels)
        out["kappa"] = model.kappa.value
    elif name == "offline":  # setup, not measured: the offline judge's answers, as the app stores them
        from clusterqc.propose import make_judge, run_batch

        start = time.perf_counter()
        out["proposed"] = run_batch(store, make_judge("offline"), concurrency=1).progress.proposed
        out["seconds"] = time.perf_counter() - start
    elif name in ("propose", "propose_cold"):
        model = learned.train_from_store(store)
        # A fresh version per repeat (same labels, another seed), so every cluster is pending.
        model.version = f"{model.version}-bench{time.time_ns()}"
        start = time.perf_counter()
        run = learned.propose_all(store, model)
        out["seconds"] = time.perf_counter() - start
        out["proposed"] = run.proposed
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def peak_rss_mib() -> float:
    """This process's own peak RSS: VmHWM (ru_maxrss would include the parent's peak, which
    Linux carries over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_phase(name: str, db: Path, root: Path = ROOT) -> dict[str, float]:
    """One phase in a fresh process with the source tree `root` (this one, or --against's)."""
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    script = root / "bench" / "bench_learned.py"
    done = subprocess.run([sys.executable, str(script), "--phase", name, "--db", str(db)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-only", action="store_true", help="Only the read baseline and training.")
    parser.add_argument("--no-cold", action="store_true", help="Skip propose_cold (minutes at 100,000).")
    parser.add_argument("--against", type=Path, default=None,
                        help="Another source tree (an older commit) whose propose phase runs turn by turn with this one.")
    parser.add_argument("--phase", default=None)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.db)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        start = time.perf_counter()
        build(db, args.clusters, args.labels)
        print(f"built {args.clusters:,} clusters, {args.labels:,} labels in {time.perf_counter() - start:.1f} s", flush=True)
        first = ("baseline", "train") if args.train_only or args.no_cold else ("baseline", "train", "propose_cold")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in first}
        for r in range(args.repeats):
            for name in first:
                results[name].append(run_phase(name, db))
                print(f"repeat {r + 1} {name}: {results[name][-1]}", flush=True)
        if not args.train_only:
            print(f"setup: offline judge for every cluster: {run_phase('offline', db)}", flush=True)
            results["propose"] = []
            if args.against:
                results["propose_against"] = []
            for r in range(args.repeats):
                turns = [("propose", ROOT)] + ([("propose_against", args.against.resolve())] if args.against else [])
                for name, root in turns if r % 2 == 0 else turns[::-1]:  # alternate who goes first
                    results[name].append(run_phase("propose", db, root))
                    print(f"repeat {r + 1} {name}: {results[name][-1]}", flush=True)
    base = statistics.median(x["seconds"] for x in results["baseline"])
    print(f"\nload average now: {os.getloadavg()[0]:.1f}")
    for name, rows in results.items():
        secs = statistics.median(x["seconds"] for x in rows)
        rss = statistics.median(x["peak_rss_mib"] for x in rows)
        print(f"{name:9s} median {secs:7.2f} s (min {min(x['seconds'] for x in rows):.2f}, max"
              f" {max(x['seconds'] for x in rows):.2f}), {secs / base:5.1f}x the read baseline,"
              f" peak RSS {rss:,.0f} MiB")
    print(f"cross-validated kappa on the hidden rule: {results['train'][0]['kappa']:.2f}")
    if args.against:
        mine = statistics.median(x["seconds"] for x in results["propose"])
        theirs = statistics.median(x["seconds"] for x in results["propose_against"])
        print(f"propose: this tree {mine:.2f} s, {args.against} {theirs:.2f} s (medians): {theirs / mine:.2f}x faster")


if __name__ == "__main__":
    main()
