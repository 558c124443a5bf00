"""Benchmark: import 100,000 synthetic clusters from luvdatacomp-format JSON and from JSONL.

Why this shape: each measurement runs in a fresh subprocess so its peak RSS (ru_maxrss) is
its own. Times are CPU time of the process (which other load on a shared machine cannot
inflate) and wall time. As baselines measured in the same process on the same file: the CPU
time of `json` parsing alone and of reading + validating without the store. Captions are
real DataComp captions from the bundled demo (data/demo_clusters.json), so their lengths and
scripts are realistic.

    /work/venv/bin/python bench/bench_import.py [--clusters 100000] [--repeat 3] [--evidence] [--against OLD_CHECKOUT]

`--evidence` gives every cluster a `stats` object (size, share, CLIP L/14 mean and quartiles)
and every sample a uid and a `clip_score`, as `clusterqc cluster` writes them from a pool.

`--against DIR` also imports the same file with the code in DIR (another checkout, e.g.
`git archive <commit> | tar -x -C DIR`), runs alternating with this one, and prints each
run's CPU time and the median ratio: on a loaded machine the ratio is what can be trusted.

Prints a Markdown table (paste it into bench/RESULTS.md, section "## Import").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clusterqc.ingest import demo_path, import_files, read_files  # noqa: E402
from clusterqc.store import Store  # noqa: E402


def captions() -> list[str]:
    """Real captions to draw from (the demo clusters' samples)."""
    data = json.loads(demo_path().read_text(encoding="utf-8"))
    out = []
    for value in data.values():
        for s in value["closest_samples"] + value["furthest_samples"]:
            out.append(s["text"] if isinstance(s, dict) else s)
    return out


def synthetic(n: int, seed: int = 0, evidence: bool = False) -> dict[str, dict]:
    """n luvdatacomp-style clusters of 5 + 5 real captions each, with a size (and evidence)."""
    rng = random.Random(seed)
    pool = captions()
    out = {
        f"Cluster_{i}": {
            "closest_samples": rng.sample(pool, 5),
            "furthest_samples": rng.sample(pool, 5),
            "size": rng.randint(100, 20_000),
        }
        for i in range(n)
    }
    if evidence:
        for value in out.values():
            for key in ("closest_samples", "furthest_samples"):
                value[key] = [{"text": t, "uid": f"{rng.getrandbits(128):032x}", "clip_score": round(rng.random() * 0.4, 4)}
                              for t in value[key]]
            q = sorted(round(rng.random() * 0.4, 4) for _ in range(3))
            value["stats"] = {"size": value["size"], "share": value["size"] / 1e9, "clip_l14_mean": q[1],
                              "clip_l14_q1": q[0], "clip_l14_median": q[1], "clip_l14_q3": q[2]}
    return out


def write_files(n: int, folder: Path, evidence: bool = False) -> dict[str, Path]:
    clusters = synthetic(n, evidence=evidence)
    luv = folder / "clusters_luvdatacomp.json"
    luv.write_text(json.dumps(clusters, ensure_ascii=False, indent=2), encoding="utf-8")
    jsonl = folder / "clusters.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for cid, value in clusters.items():
            fh.write(json.dumps({"cluster_id": cid, **value}, ensure_ascii=False) + "\n")
    return {"luvdatacomp JSON": luv, "JSONL": jsonl}


def _timed(fn):  # type: ignore[no-untyped-def]
    """(result, wall seconds, CPU seconds): CPU time is what other load on the machine cannot inflate."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def measure_one(path: str, db: str) -> dict[str, float]:
    """Run inside the child: json floor, read+validate, whole import; timings and peak RSS."""

    def floor() -> None:
        with open(path, encoding="utf-8") as fh:
            if path.endswith(".jsonl"):
                [json.loads(line) for line in fh]
            else:
                json.load(fh)

    def full() -> int:
        with Store(db) as store:
            return import_files(store, [path]).added

    n, import_wall, import_cpu = _timed(full)  # first, so peak RSS is the import's own
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, json_wall, json_cpu = _timed(floor)
    _, read_wall, read_cpu = _timed(lambda: read_files([path]))
    return {
        "n": n,
        "import_s": import_wall,
        "import_cpu": import_cpu,
        "json_cpu": json_cpu,
        "read_cpu": read_cpu,
        "rss_mb": rss / 1024,
    }


def run_child(path: Path, folder: Path, i: int, root: Path = ROOT) -> dict[str, float]:
    db = folder / f"bench_{path.stem}_{root.name}_{i}.db"
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "bench_import.py"), "--child", str(path), str(db)],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    )
    return json.loads(out.stdout)


def compare(files: dict[str, Path], folder: Path, against: Path, repeat: int) -> None:
    """This code vs `against`, alternating runs on the same file: CPU s each and the median ratio."""
    import statistics

    print(f"\n| format | this code, CPU s (runs) | {against.name}, CPU s (runs) | median ratio (this / other) |")
    print("|---|---|---|---|")
    for name, path in files.items():
        mine, other = [], []
        for i in range(repeat):
            mine.append(run_child(path, folder, i)["import_cpu"])
            other.append(run_child(path, folder, i, against)["import_cpu"])
        ratio = statistics.median(m / o for m, o in zip(mine, other))
        print(f"| {name} | {', '.join(f'{x:.2f}' for x in mine)} | {', '.join(f'{x:.2f}' for x in other)} | {ratio:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("FILE", "DB"))
    parser.add_argument("--against", type=Path, default=None, help="another checkout to compare with")
    parser.add_argument("--evidence", action="store_true", help="clusters with stats, samples with uid and clip_score")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(*args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_files(args.clusters, folder, args.evidence)
        shape = " with stats and per-sample uid + clip_score" if args.evidence else ""
        print(f"{args.clusters:,} clusters x 10 captions{shape}; python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
        print(
            "| format | file MB | json.load alone, CPU s | read+validate, CPU s | full import, CPU s "
            "| full import, wall s | clusters/s (CPU) | clusters/s (wall) | peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, path in files.items():
            runs = [run_child(path, folder, i) for i in range(args.repeat)]
            best = min(runs, key=lambda r: r["import_cpu"])
            fastest = min(r["import_s"] for r in runs)
            print(
                f"| {name} | {path.stat().st_size / 2**20:.1f} | {best['json_cpu']:.2f} | {best['read_cpu']:.2f} "
                f"| {best['import_cpu']:.2f} | {fastest:.2f} | {best['n'] / best['import_cpu']:,.0f} "
                f"| {best['n'] / fastest:,.0f} | {max(r['rss_mb'] for r in runs):.0f} |"
            )
        if args.against is not None:
            compare(files, folder, args.against.resolve(), args.repeat)

if __name__ == "__main__":
    main()
