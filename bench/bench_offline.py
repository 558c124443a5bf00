"""Offline judge and parser throughput on clusters of real DataComp captions.

Usage: python bench/bench_offline.py [--clusters 1300]

Builds clusters of 10 captions from the shared DataComp-small sample (or the test fixture
if that is absent), then times, in the same process:
- baseline: rendering the seed prompt for each cluster (what any judge must at least do);
- the offline judge's `judge(cluster)`;
- `parse_answer` over the parser test corpus, repeated.
Reports per-item times and the judge's cost as a multiple of the render baseline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from clusterqc.judges.offline import OfflineJudge
from clusterqc.model import Cluster, Sample
from clusterqc.parse import parse_answer
from clusterqc.prompt import default_template

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "datacomp_small_sample.jsonl"
FIXTURE = ROOT / "tests" / "fixtures" / "datacomp_small_captions.jsonl"


def captions() -> list[str]:
    path = SHARED if SHARED.exists() else FIXTURE
    return [json.loads(line)["caption"] for line in path.read_text(encoding="utf-8").splitlines()]


def clusters(n: int) -> list[Cluster]:
    texts = captions()
    out = []
    for i in range(n):
        chunk = [texts[(i * 10 + k) % len(texts)] for k in range(10)]
        out.append(Cluster(f"Cluster_{i}", tuple(map(Sample, chunk[:5])), tuple(map(Sample, chunk[5:]))))
    return out


def timed(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def corpus_texts() -> list[str]:
    spec = importlib.util.spec_from_file_location("parse_corpus", ROOT / "tests" / "parse_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return [case.text for case in module.CORPUS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1300)
    args = parser.parse_args()
    data = clusters(args.clusters)
    template, judge = default_template(), OfflineJudge()
    judge.judge(data[0])  # warm up regex and ftfy caches
    render_s = timed(template.render, data)
    judge_s = timed(judge.judge, data)
    answers = corpus_texts() * 50
    parse_s = timed(parse_answer, answers)
    n = len(data)
    print(f"clusters: {n} (10 real DataComp captions each)")
    print(f"render seed prompt (baseline): {render_s / n * 1e3:.3f} ms/cluster")
    print(f"offline judge:                 {judge_s / n * 1e3:.3f} ms/cluster ({n / judge_s:,.0f} clusters/s,"
          f" {judge_s / render_s:.1f}x the render baseline)")
    print(f"parse_answer:                  {parse_s / len(answers) * 1e6:.1f} us/answer ({len(answers)} answers)")


if __name__ == "__main__":
    main()
