"""Worker processes for the reliability tests: real OS processes on one database file.

Run as `python tests/reliability_workers.py COMMAND ...`. Each worker goes through the same
public `Store` methods the app uses (`decide`, `undo_last`), prints one line per committed
unit of work (flushed, so a parent that SIGKILLs it knows what was acknowledged), and exits
non-zero with the traceback on stderr if anything at all goes wrong - the stress test
requires that no process saw an error.

Decisions are identified by their note, `"<reviewer>:<i>"`, so a checker can prove every
one was written exactly once, and a re-run (`--resume`) can finish the work a killed run left.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clusterqc.model import Cluster, Sample, Verdict
from clusterqc.store import Store

UNDO_EVERY = 7


def make_clusters(n: int, prefix: str = "Cluster_") -> list[Cluster]:
    """`n` small distinct clusters, enough to spread decisions over."""
    return [
        Cluster(
            id=f"{prefix}{i}",
            closest=tuple(Sample(f"a photo of thing {i} number {j}") for j in range(5)),
            furthest=tuple(Sample(f"an unrelated caption {i}/{j}") for j in range(5)),
            size=100 + i,
        )
        for i in range(n)
    ]


def verdict_for(reviewer: str, i: int) -> Verdict:
    return Verdict.ACCEPTABLE if (i + len(reviewer)) % 2 == 0 else Verdict.UNACCEPTABLE


def note_for(reviewer: str, i: int) -> str:
    return f"{reviewer}:{i}"


def done_notes(store: Store, reviewer: str) -> dict[str, int]:
    """note -> decision id for the reviewer's decide rows already in the log."""
    return {d.note: d.id for d in store.decisions(reviewer=reviewer) if d.action == "decide"}


def run_decide(db: str, reviewer: str, count: int, undo: bool, resume: bool) -> None:
    """Decide `count` clusters (round robin over all ids); with `undo`, undo every 7th at once."""
    with Store(db) as store:
        ids = store.cluster_ids()
        done = done_notes(store, reviewer) if resume else {}
        undone = {d.reverts for d in store.decisions(reviewer=reviewer) if d.action == "undo"}
        print("ready", flush=True)
        for i in range(count):
            note = note_for(reviewer, i)
            if note not in done:
                decision = store.decide(ids[i % len(ids)], reviewer, verdict_for(reviewer, i), note=note)
                done[note] = decision.id
                print(f"decided {i}", flush=True)
            if undo and i % UNDO_EVERY == 0 and done[note] not in undone:
                reverted = store.undo_last(reviewer)
                assert reverted is not None and reverted.reverts == done[note], (reverted, done[note])
                undone.add(done[note])
                print(f"undone {i}", flush=True)


def run_export_loop(db: str, out_dir: str, times: int) -> None:
    """Export the labels `times` times while others write; each file must be whole and readable."""
    from clusterqc.export import export_labels

    with Store(db) as store:
        print("ready", flush=True)
        for k in range(times):
            counts = export_labels(store, Path(out_dir) / f"export{k}.csv", "csv")
            print(f"exported {k} {counts['rows']}", flush=True)


def run_propose(db: str) -> None:
    """The offline judge through the batch runner: the same code path as `clusterqc propose`."""
    from clusterqc.propose import make_judge, run_batch

    with Store(db) as store:
        print("ready", flush=True)
        result = run_batch(store, make_judge("offline"))
    p = result.progress
    print(f"proposed {p.proposed} failed {p.failed} already {p.already} stopped {result.stopped}", flush=True)
    if result.errors or result.stopped:
        raise SystemExit(f"batch errors: {result.errors[:3]} stopped: {result.stopped}")


def run_seed(db: str, clusters: int) -> None:
    with Store(db) as store:
        store.import_clusters(make_clusters(clusters), source="seed")


def label_state(store: Store) -> list[tuple[object, ...]]:
    """Labels plus per-cluster review counts: everything derived from the decision log."""
    labels = sorted((l["cluster_id"], l["reviewer"], l["verdict"], l["decision_id"]) for l in store.labels())
    counts = [(cid, store.cluster_info(cid)["n_reviews"]) for cid in store.cluster_ids()]
    return labels + counts


def derived_matches_log(db: str | Path, scratch: Path) -> bool:
    """True if the derived tables equal what `rebuild_labels` makes from the log (on a copy)."""
    copy = scratch / f"rebuild-{time.monotonic_ns()}.db"
    with Store(db) as store:
        before = label_state(store)
        store.backup(copy)
    with Store(copy) as rebuilt:
        rebuilt.rebuild_labels()
        after = label_state(rebuilt)
    return before == after


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    seed = sub.add_parser("seed")
    seed.add_argument("db")
    seed.add_argument("clusters", type=int)
    dec = sub.add_parser("decide")
    dec.add_argument("db")
    dec.add_argument("reviewer")
    dec.add_argument("count", type=int)
    dec.add_argument("--undo", action="store_true")
    dec.add_argument("--resume", action="store_true")
    dec.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at (line up workers)")
    exp = sub.add_parser("export-loop")
    exp.add_argument("db")
    exp.add_argument("out_dir")
    exp.add_argument("times", type=int)
    exp.add_argument("--start-at", type=float, default=0.0)
    prop = sub.add_parser("propose")
    prop.add_argument("db")
    prop.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args(argv)
    if getattr(args, "start_at", 0.0):
        time.sleep(max(0.0, args.start_at - time.time()))
    if args.cmd == "seed":
        run_seed(args.db, args.clusters)
    elif args.cmd == "propose":
        run_propose(args.db)
    elif args.cmd == "export-loop":
        run_export_loop(args.db, args.out_dir, args.times)
    elif args.cmd == "decide":
        run_decide(args.db, args.reviewer, args.count, args.undo, args.resume)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
