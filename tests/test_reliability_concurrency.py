"""Many writers, one database file: every decision lands exactly once and nobody sees an error.

Eight reviewer processes record 500 decisions each through `Store.decide` (the app's path)
while a ninth runs a proposal batch and a tenth exports, all on one SQLite file. Busy waits
must be absorbed by the store (BEGIN IMMEDIATE, busy timeout, bounded retry): a single
"database is locked" in any process fails the test.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from clusterqc.store import Store
from reliability_workers import derived_matches_log, make_clusters, note_for

WORKERS = Path(__file__).with_name("reliability_workers.py")
REVIEWERS = 8
PER_REVIEWER = 500
CLUSTERS = 1000
EXPORTS = 8


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _side_jobs(db: Path, out_dir: Path, start_at: float) -> dict[str, subprocess.Popen[str]]:
    """The ninth and tenth processes: the offline judge through the batch runner, repeated exports."""
    out_dir.mkdir()
    return {
        "propose": _spawn([sys.executable, str(WORKERS), "propose", str(db), "--start-at", str(start_at)]),
        "export": _spawn(
            [sys.executable, str(WORKERS), "export-loop", str(db), str(out_dir), str(EXPORTS), "--start-at", str(start_at)]
        ),
    }


@pytest.mark.slow
def test_eight_reviewers_and_a_batch_and_an_export(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    with Store(db) as store:
        store.import_clusters(make_clusters(CLUSTERS), source="seed")
    start_at = time.time() + 1.5  # every process imported and connected before anyone writes
    procs = {
        f"r{k}": _spawn(
            [sys.executable, str(WORKERS), "decide", str(db), f"r{k}", str(PER_REVIEWER), "--start-at", str(start_at)]
        )
        for k in range(REVIEWERS)
    }
    procs.update(_side_jobs(db, tmp_path / "exports", start_at))
    outcomes = {name: (p.wait(timeout=300), *p.communicate()) for name, p in procs.items()}
    for name, (rc, _out, err) in outcomes.items():
        seen = err.lower()
        assert rc == 0 and not any(w in seen for w in ("traceback", "locked", "error")), f"{name} saw an error:\n{err}"

    with Store(db) as store:
        assert store.integrity_check() == "ok"
        decisions = store.decisions()
    notes = Counter(d.note for d in decisions)
    expected = {note_for(f"r{k}", i) for k in range(REVIEWERS) for i in range(PER_REVIEWER)}
    assert set(notes) == expected
    assert max(notes.values()) == 1, "a decision was written twice"
    assert len(decisions) == REVIEWERS * PER_REVIEWER
    assert derived_matches_log(db, tmp_path)
    for k in range(REVIEWERS):
        assert outcomes[f"r{k}"][1].count("decided") == PER_REVIEWER

    # The batch proposed for every cluster exactly once, despite the reviewers' writes.
    assert f"proposed {CLUSTERS} failed 0 already 0 stopped None" in outcomes["propose"][1]
    with Store(db) as store:
        assert [(judge, n) for judge, _version, n in store.judges()] == [("offline", CLUSTERS)]
        proposed_at = sorted(p.created_at for p in store.proposals())
    decided_at = sorted(d.created_at for d in decisions)
    # The batch really ran while reviewers wrote (else this test would prove nothing about it).
    assert proposed_at[0] < decided_at[-1] and decided_at[0] < proposed_at[-1]
    # Every export is a whole file, and each saw at least as many reviewed clusters as the one before.
    rows = [int(line.split()[2]) for line in outcomes["export"][1].splitlines() if line.startswith("exported")]
    assert len(rows) == EXPORTS and rows == sorted(rows)
    for k, n in enumerate(rows):
        with open(tmp_path / "exports" / f"export{k}.csv", newline="", encoding="utf-8") as fh:
            assert sum(1 for _ in csv.DictReader(fh)) == n
