"""Server-side time of one Accept-and-show-next rerun of the Review page, at 1k and 100k clusters.

Each database holds N clusters, one proposal per cluster and N decisions (two colleagues have
each decided the first N/2 clusters, so the queue starts half-way through, past what they
did). An AppTest session for a third reviewer then presses Accept repeatedly; each rerun
appends a decision, takes the next cluster from the queue (and a hold on it) and renders it.

Run: /work/venv/bin/python bench/bench_review.py [--sizes 1000 100000] [--repeats 40]
Writes the numbers to the `## Review` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
TARGET_MS = 100.0
TARGET_RATIO = 1.5


def seed(db: Path, n: int) -> float:
    """N clusters, N proposals, N decisions; returns the seconds it took."""
    start = time.perf_counter()
    clusters = [
        Cluster(
            f"Cluster_{i}",
            tuple(Sample(f"photo {k} of a red bicycle in a park, cluster {i}") for k in range(5)),
            tuple(Sample(f"aerial view of a harbour at dusk, shot {k} of {i}") for k in range(5)),
            size=1000 + (i * 7919) % 5000,
        )
        for i in range(n)
    ]
    with Store(db) as store:
        store.import_clusters(clusters)
        verdicts = (Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE)
        store.add_proposals(
            Proposal(c.id, "offline", "bench", verdicts[i % 2], "synthetic reason") for i, c in enumerate(clusters)
        )
        ids = {p.cluster_id: p.id for p in store.proposals()}
        for i in range(n // 2):
            cid = f"Cluster_{i}"
            for reviewer in ("colleague-1", "colleague-2"):
                store.decide(cid, reviewer, verdicts[(i + len(reviewer)) % 2], proposal_id=ids[cid])
    return time.perf_counter() - start


def accept_button(at: object) -> object:
    """The Accept button of the card on screen (its key carries the card's token)."""
    return next(b for b in at.main.button if b.key and b.key.startswith("cqc_btn_accept__"))  # type: ignore[attr-defined]


def _session(db: Path) -> object:
    """An AppTest session of app.py for reviewer `bench` on `db`, one Accept already done."""
    from streamlit.testing.v1 import AppTest

    os.environ["CLUSTERQC_DB"] = str(db)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["reviewer"] = "bench"
    at.run()
    accept_button(at).click().run()  # warm-up: caches, first decision
    return at


def measure(dbs: list[Path], repeats: int) -> dict[Path, list[float]]:
    """Milliseconds per Accept rerun (`AppTest.run()` after a click) for each database.

    The sessions take turns, one rerun each, so a busy neighbour on this shared 2-core machine
    slows every size alike instead of skewing the ratio.
    """
    from streamlit.runtime.scriptrunner import script_runner

    class _NavigationV2:  # see tests/test_review_app.py::navigation_v2
        uses_pages_directory = False

    script_runner.PagesManager = _NavigationV2  # type: ignore[misc]
    os.environ["CLUSTERQC_DEMO"] = "0"
    sessions = {db: _session(db) for db in dbs}
    times: dict[Path, list[float]] = {db: [] for db in dbs}
    for _ in range(repeats):
        for db, at in sessions.items():
            os.environ["CLUSTERQC_DB"] = str(db)  # the app resolves its database on every run
            accept_button(at).click()
            start = time.perf_counter()
            at.run()
            times[db].append((time.perf_counter() - start) * 1000)
            if at.exception or at.error:
                raise RuntimeError(f"the app failed: {[e.value for e in at.exception] + [e.value for e in at.error]}")
    for db in dbs:
        with Store(db) as store:
            mine = len(store.decisions(reviewer="bench"))
        if mine != repeats + 1:
            raise RuntimeError(f"{db.name}: expected {repeats + 1} decisions by the bench reviewer, found {mine}")
    return times


QUEUES = [("unreviewed", "id"), ("unreviewed", "size"), ("unreviewed", "uncertainty"), ("all", "id"),
          ("mine", "id"), ("disagreements", "id"), ("unparsed", "id")]


def queue_times(db: Path, repeats: int = 5) -> dict[tuple[str, str], float]:
    """Median ms of `next_cluster` (choose + hold) per filter/sort, for a reviewer with no decisions."""
    out = {}
    with Store(db) as store:
        for flt, sort in QUEUES:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                store.next_cluster("queue-probe", filter=flt, sort=sort)
                times.append((time.perf_counter() - start) * 1000)
            out[(flt, sort)] = statistics.median(times)
        store.release_holds("queue-probe")
    return out


def write_results(lines: list[str]) -> None:
    """Replace (or add) the `## Review` section of RESULTS.md, leaving other sections alone."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = "## Review\n\n" + "\n".join(lines) + "\n"
    parts = text.split("\n## ")
    kept = [parts[0]] + [p for p in parts[1:] if not p.startswith("Review\n")]
    RESULTS.write_text("\n## ".join(kept).rstrip("\n") + "\n\n" + section)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    medians: dict[int, float] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {n: Path(tmp) / f"review-{n}.db" for n in args.sizes}
        seeded = {n: seed(db, n) for n, db in dbs.items()}
        times = measure(list(dbs.values()), args.repeats)
        queues = {n: queue_times(db) for n, db in dbs.items()}
        for n, db in dbs.items():
            med = statistics.median(times[db])
            p90 = statistics.quantiles(times[db], n=10)[-1]
            medians[n] = med
            rows.append(f"| {n:,} | {n:,} | {med:.1f} | {p90:.1f} | {min(times[db]):.1f} | {seeded[n]:.0f} s |")
            print(f"{n:>7} clusters: median {med:.1f} ms, p90 {p90:.1f} ms (seeded in {seeded[n]:.0f} s)", flush=True)
    small, large = min(medians), max(medians)
    ratio = medians[large] / medians[small]
    ok = medians[large] < TARGET_MS and ratio <= TARGET_RATIO
    verdict = f"ratio {large:,} / {small:,} = {ratio:.2f} (target <= {TARGET_RATIO}); " \
              f"median at {large:,} {'under' if medians[large] < TARGET_MS else 'OVER'} {TARGET_MS:.0f} ms"
    print(verdict, "- PASS" if ok else "- FAIL")
    lines = [
        "One Accept-and-show-next rerun of the Review page, timed server-side with Streamlit's AppTest",
        "(`AppTest.run()` after clicking Accept: the decision is appended, the next cluster is taken",
        "from the queue with a hold, and the page is rendered). Each database holds N clusters, one",
        "proposal each and N decisions (two colleagues decided the first N/2 clusters).",
        f"{args.repeats} reruns per size after one warm-up, the sizes taking turns (so load from other",
        "processes on this shared 2-core machine hits both alike).",
        "",
        f"Command: `/work/venv/bin/python bench/bench_review.py --sizes {' '.join(map(str, args.sizes))} "
        f"--repeats {args.repeats}`",
        "",
        "| clusters | decisions | median ms | p90 ms | min ms | seeding |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Result: {verdict} - {'PASS' if ok else 'FAIL'}. 1-minute load average at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes share the machine, so "
        "absolute times are upper bounds; the ratio is what the interleaving protects).",
        "",
        "The queue query alone (`Store.next_cluster`, choice plus hold; median of 5, ms) per filter and sort:",
        "",
        "| filter / sort | " + " | ".join(f"{n:,} clusters" for n in dbs) + " |",
        "|---|" + "---:|" * len(dbs),
        *[f"| {flt} / {sort} | " + " | ".join(f"{queues[n][(flt, sort)]:.2f}" for n in dbs) + " |"
          for flt, sort in QUEUES],
        "",
        "\"Needs review\" filters sorted by id or size are index walks (one per review count below",
        "the reviews wanted). The browse filters `mine`, `disagreements` and `unparsed` start from",
        "their own rows through indexes, so they cost what they hold (`disagreements` holds half the",
        "clusters here: every seeded decision disagrees with its proposal). The uncertainty sort",
        "computes a score per cluster; it is not part of the target above.",
    ]
    if not args.no_write:
        write_results(lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
