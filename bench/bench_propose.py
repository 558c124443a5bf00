"""Proposal throughput: the batch runner + real openai client + real SQLite store vs a 100 ms endpoint.

    python bench/bench_propose.py            # 2,000 clusters at concurrency 1, 8, 32, 64 (~4.5 min)
    python bench/bench_propose.py --quick    # 200 clusters (concurrency 1: 50), for CI (~20 s)

The stand-in server (tests/openai_standin.py) runs in its own process, as a real endpoint
would, so its work does not share this process's GIL or CPU clock. Each concurrency level gets
a fresh store with the same clusters (built from real DataComp captions) and runs exactly as
`clusterqc propose` does: prompt rendering, HTTP, parsing and one commit per answer.

Reported: clusters/s; the fraction of the ideal (concurrency / latency: every request in flight
all the time, zero overhead); the speed-up over concurrency 1 (the original pipeline's
one-at-a-time loop) measured in the same run; and this process's CPU time per proposal.
The target is >= 75% of ideal at concurrency 32.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clusterqc.judges.llm import LLMJudge  # noqa: E402
from clusterqc.model import Cluster, Sample  # noqa: E402
from clusterqc.propose import run_batch  # noqa: E402
from clusterqc.settings import EndpointConfig  # noqa: E402
from clusterqc.store import Store  # noqa: E402

SAMPLE = Path("/work/shared/data/datacomp_small_sample.jsonl")
LEVELS = (1, 8, 32, 64)


def captions() -> list[str]:
    """Real captions when the shared sample is there; a synthetic stand-in otherwise."""
    for path in (SAMPLE, ROOT / "data" / "datacomp_small_sample.jsonl"):
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                return [json.loads(line)["caption"] for line in f if line.strip()]
    return [f"photo of item {i} on a table in soft light" for i in range(5000)]


def make_clusters(n: int) -> list[Cluster]:
    texts = captions()
    out = []
    for i in range(n):
        pick = [texts[(i * 10 + k) % len(texts)] for k in range(10)]
        out.append(Cluster(f"Cluster_{i}", tuple(map(Sample, pick[:5])), tuple(map(Sample, pick[5:])), size=50))
    return out


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_standin.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def measure(url: str, clusters: list[Cluster], concurrency: int, workdir: Path) -> dict[str, float]:
    db = workdir / f"bench-{concurrency}.db"
    with Store(db) as store:
        store.import_clusters(clusters)
        judge = LLMJudge(EndpointConfig(model="bench", base_url=url, api_key="sk-bench", timeout=30))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = run_batch(store, judge, concurrency=concurrency)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        stored = store.stats().proposals
        judge.close()
    assert stored == len(clusters) == result.progress.proposed, (stored, result.progress)
    return {"n": len(clusters), "wall": wall, "rate": len(clusters) / wall, "cpu_ms": cpu / len(clusters) * 1000}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Proposal throughput against a stand-in endpoint.")
    parser.add_argument("--quick", action="store_true", help="200 clusters (50 at concurrency 1)")
    parser.add_argument("--clusters", type=int, default=None, help="clusters per level (default 2,000)")
    parser.add_argument("--latency", type=float, default=0.1, help="endpoint latency in seconds")
    parser.add_argument("--levels", type=lambda s: tuple(int(x) for x in s.split(",")), default=LEVELS,
                        help="concurrency levels, comma-separated (default 1,8,32,64; the first is the baseline)")
    args = parser.parse_args(argv)
    n = args.clusters or (200 if args.quick else 2000)
    proc, url = start_server(args.latency)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for level in args.levels:
                count = min(n, 50) if args.quick and level == 1 else n
                row = measure(url, make_clusters(count), level, Path(tmp))
                row["ideal"] = level / args.latency
                rows.append((level, row))
                print(f"concurrency {level:>2}: {row['rate']:7.1f} clusters/s", file=sys.stderr, flush=True)
    finally:
        proc.kill()
        proc.wait()
    base = rows[0][1]["rate"]
    print(f"{n:,} clusters per level (concurrency 1: {rows[0][1]['n']:,}), endpoint latency "
          f"{args.latency * 1000:.0f} ms, stand-in in its own process.\n")
    print("| concurrency | clusters/s | ideal | of ideal | vs one at a time | CPU ms / proposal |")
    print("|---:|---:|---:|---:|---:|---:|")
    for level, r in rows:
        print(f"| {level} | {r['rate']:.1f} | {r['ideal']:.0f} | {r['rate'] / r['ideal']:.0%} "
              f"| {r['rate'] / base:.1f}x | {r['cpu_ms']:.2f} |")


if __name__ == "__main__":
    main()
