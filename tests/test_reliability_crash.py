"""SIGKILL at random moments: the database opens, passes the integrity check, holds every
file and every decision whole or not at all, and a re-run finishes the work.

Each operation runs in a real subprocess that is killed at a seeded random moment after it
reports it has started; the checks then look at the file that process left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterqc.ingest import import_files, read_clusters
from clusterqc.judges.offline import OfflineJudge
from clusterqc.propose import make_judge, run_batch
from clusterqc.store import Store
from reliability_workers import UNDO_EVERY, derived_matches_log, make_clusters, note_for

WORKERS = Path(__file__).with_name("reliability_workers.py")
TRIALS = 20
SEED = 20260607


def _kill_after(proc: subprocess.Popen[str], acknowledged: int, jitter: float) -> list[str]:
    """SIGKILL `proc` `jitter` seconds after its `acknowledged`-th commit; return all it printed.

    Counting commits instead of seconds puts the kill at a random point of the work however
    loaded the machine is; the jitter puts it anywhere inside the transactions that follow.
    """
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]
    assert lines[0].strip() == "ready", lines[0] + (proc.stderr.read() if proc.stderr else "")
    seen = 0
    while seen < acknowledged:
        line = proc.stdout.readline()
        assert line, "the worker ended before the kill"
        lines.append(line)
        seen += line.startswith("decided")
    time.sleep(jitter)
    os.kill(proc.pid, signal.SIGKILL)
    # Read through the same buffered file as readline did: communicate() would read the raw pipe
    # and miss lines readline had already buffered.
    lines += proc.stdout.read().splitlines()
    proc.wait()
    return [line.strip() for line in lines]


def _acknowledged(lines: list[str], word: str) -> set[int]:
    return {int(line.split()[1]) for line in lines if line.startswith(word)}


# --------------------------------------------------------------------------- decisions

DECISIONS = 400


def _decide(db: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKERS), "decide", str(db), "ana", str(DECISIONS), "--undo", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_decision_log(db: Path, acknowledged: set[int], undone: set[int], complete: bool) -> None:
    with Store(db) as store:
        assert store.integrity_check() == "ok"
        log = store.decisions(reviewer="ana")
    decides = [d for d in log if d.action == "decide"]
    notes = [d.note for d in decides]
    # Every acknowledged decision survived, in order, none twice, and at most one more.
    assert notes == [note_for("ana", i) for i in range(len(notes))]
    assert acknowledged <= set(range(len(notes)))
    if not complete:
        assert len(notes) <= len(acknowledged) + 1
    reverted = {d.reverts for d in log if d.action == "undo"}
    by_id = {d.id: int(d.note.split(":")[1]) for d in decides}
    assert {by_id[r] for r in reverted} >= undone
    assert all(by_id[r] % UNDO_EVERY == 0 for r in reverted)
    if complete:
        assert len(notes) == DECISIONS
        assert {by_id[r] for r in reverted} == set(range(0, DECISIONS, UNDO_EVERY))


@pytest.mark.slow
def test_decision_writes_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    interrupted = 0
    for trial in range(TRIALS):
        db = tmp_path / f"decide{trial}.db"
        with Store(db) as store:
            store.import_clusters(make_clusters(40), source="seed")
        lines = _kill_after(_decide(db), rng.randrange(DECISIONS - 40), rng.uniform(0.0, 0.01))
        acknowledged, undone = _acknowledged(lines, "decided"), _acknowledged(lines, "undone")
        interrupted += len(acknowledged) < DECISIONS
        _check_decision_log(db, acknowledged, undone, complete=False)
        assert derived_matches_log(db, tmp_path), f"trial {trial}: labels disagree with the decision log"
        rerun = _decide(db, "--resume")
        _out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        _check_decision_log(db, acknowledged, undone, complete=True)
        assert derived_matches_log(db, tmp_path)
    # The kills must land mid-run, or the test proves nothing.
    assert interrupted >= TRIALS * 3 // 4, f"only {interrupted} of {TRIALS} kills landed mid-run"


# --------------------------------------------------------------------------- import

IMPORT_FILES = {"A": 3000, "B": 3000}


def _write_cluster_files(folder: Path) -> list[Path]:
    """Two luvdatacomp-format files with disjoint ids, so each file's fate can be told apart."""
    paths = []
    for name, n in IMPORT_FILES.items():
        data = {
            f"{name}_{i}": {
                "closest_samples": [f"caption {name} {i}.{j} of a red bicycle" for j in range(5)],
                "furthest_samples": [f"far caption {name} {i}.{j}" for j in range(5)],
            }
            for i in range(n)
        }
        path = folder / f"{name}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(path)
    return paths


def _import(db: Path, paths: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "clusterqc", "import", *map(str, paths), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wall_time(proc: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.monotonic() - started


def _kill_at(proc: subprocess.Popen[str], delay: float) -> None:
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def _files_present(db: Path) -> dict[str, int]:
    with Store(db) as store:
        assert store.integrity_check() == "ok"
        ids = store.cluster_ids()
    return {name: sum(cid.startswith(f"{name}_") for cid in ids) for name in IMPORT_FILES}


@pytest.mark.slow
def test_import_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    paths = _write_cluster_files(tmp_path)
    window = _wall_time(_import(tmp_path / "calibrate.db", paths))
    expected = read_clusters(paths[0])[123]
    for trial in range(TRIALS):
        db = tmp_path / f"import{trial}.db"
        _kill_at(_import(db, paths), rng.uniform(0.0, window))
        present = _files_present(db)
        for name, n in IMPORT_FILES.items():
            assert present[name] in (0, n), f"trial {trial}: file {name} half imported ({present[name]} of {n})"
        with Store(db) as store:  # the re-run, in process: the same entry point the app uses
            import_files(store, paths)
            assert store.get_cluster(expected.id, dataset=expected.dataset) == expected  # file A: dataset A
        assert _files_present(db) == IMPORT_FILES


# --------------------------------------------------------------------------- proposal batches

PROPOSE_CLUSTERS = 400


def _propose(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "clusterqc", "propose", "--judge", "offline", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check_proposals(db: Path) -> int:
    """Every stored proposal is whole: exactly what the (deterministic) offline judge says."""
    judge = OfflineJudge()
    with Store(db) as store:
        assert store.integrity_check() == "ok"
        stored = store.proposals()
        clusters = {c.id: c for c in store.iter_clusters([p.cluster_id for p in stored])}
    for p in stored:
        fresh = judge.judge(clusters[p.cluster_id])
        assert (p.judge, p.prompt_version, p.verdict, p.reason) == (
            fresh.judge,
            fresh.prompt_version,
            fresh.verdict,
            fresh.reason,
        )
    assert len({p.cluster_id for p in stored}) == len(stored)
    return len(stored)


@pytest.mark.slow
def test_proposal_batch_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    template = tmp_path / "template.db"
    with Store(template) as store:
        store.import_clusters(make_clusters(PROPOSE_CLUSTERS), source="seed")
    calibration = tmp_path / "calibrate.db"
    with Store(template) as store:
        store.backup(calibration)
    window = _wall_time(_propose(calibration))
    partial = 0
    for trial in range(TRIALS):
        db = tmp_path / f"propose{trial}.db"
        with Store(template) as store:
            store.backup(db)
        _kill_at(_propose(db), rng.uniform(0.0, window))
        partial += 0 < _check_proposals(db) < PROPOSE_CLUSTERS
        with Store(db) as store:  # the re-run, in process: the runner the CLI and the app use
            result = run_batch(store, make_judge("offline"))
            assert not result.errors and result.stopped is None
            assert store.pending_cluster_ids(OfflineJudge.name, OfflineJudge.prompt_version) == []
        assert _check_proposals(db) == PROPOSE_CLUSTERS
    assert partial >= 1, "no kill landed mid-batch"
