"""The Review queue's "least certain first" sort and "learned and LLM disagree" filter at scale.

Usage: python bench/bench_queue_learned.py [--clusters 100000] [--repeats 5]

A store of N clusters, each with a learned proposal (random confidence 0.5-1) and, for half of
them, an LLM proposal; times `next_cluster` (the call behind every decision on the Review page)
for the sort by id (baseline) and the two learned queues. Medians over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "q.db")
        store.import_clusters(Cluster(f"Cluster_{i}", (Sample(f"caption {i}"),), (Sample(f"other {i}"),), size=i)
                              for i in range(args.clusters))
        p = rng.uniform(0, 1, args.clusters)
        store.add_proposals(Proposal(f"Cluster_{i}", "learned", "learned-x", Verdict.UNACCEPTABLE if x >= 0.5
                                     else Verdict.ACCEPTABLE, "", confidence=max(x, 1 - x)) for i, x in enumerate(p))
        store.add_proposals(Proposal(f"Cluster_{i}", "gpt", "v1", Verdict.ACCEPTABLE, "") for i in range(0, args.clusters, 2))
        for label, filter, sort in (("id (baseline)", "unreviewed", "id"), ("least certain first", "unreviewed", "least_certain"),
                                    ("learned vs LLM filter", "learned_vs_llm", "id")):
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                store.next_cluster(f"rev{r}", filter=filter, sort=sort)
                times.append(time.perf_counter() - start)
            print(f"{label:24s} next_cluster median {statistics.median(times) * 1000:8.1f} ms"
                  f" (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})", flush=True)


if __name__ == "__main__":
    main()
