"""Unusable, foreign and newer databases (issue 11, items 4, 9, 15, 19): one line, exit 1, file untouched.

Every CLI command that opens the database is run against each kind of broken file through the
real CLI (click's CliRunner); the refusal must be a single `error: <file>: <problem>` line with
no traceback, and the file must be byte-identical afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import marked_clusters
from mounts import fill, read_only_file, read_only_folder, tiny_tmpfs

from clusterqc.cli import cli
from clusterqc.ingest import demo_path
from clusterqc.model import Proposal, Verdict
from clusterqc.store import Store

# Every command that opens the database, with arguments that would otherwise get it to work.
COMMANDS: list[list[str]] = [
    ["stats"],
    ["agreement"],
    ["import", "--demo"],
    ["propose", "--judge", "offline"],
    ["export", "--out", "{tmp}/labels.csv"],
    ["export-uids", "--assignments", "{tmp}/assign.csv", "--out", "{tmp}/subset.npy"],
    ["backup", "--out", "{tmp}/backup.db"],
    ["import-proposals", "{tmp}/answers.json", "--judge", "m"],
    ["fewshot", "suggest"],
    ["fewshot", "mark", "Cluster_1", "--reason", "r"],
    ["fewshot", "guideline"],
    ["prompt", "list"],
    ["prompt", "show", "seed"],
    ["prompt", "create", "--name", "n", "--examples", "Cluster_1"],
    ["prompt", "diff", "a", "b"],
    ["prompt", "activate", "seed"],
    ["evaluate", "--prompt", "seed", "--no-run", "--judge", "offline"],
]


def _inputs(tmp: Path) -> None:
    (tmp / "assign.csv").write_text("uid,cluster_id\n" + "0" * 32 + ",Cluster_1\n")
    (tmp / "answers.json").write_text('{"Cluster_1": "Reason: fine\\nClassification: Acceptable"}')


def _run(db: Path, args: list[str], tmp: Path) -> Result:
    argv = [a.replace("{tmp}", str(tmp)) for a in args]
    # --db goes right after the (sub)command's name(s): the groups take no options.
    depth = 2 if argv[0] in ("fewshot", "prompt") else 1
    return CliRunner().invoke(cli, [*argv[:depth], "--db", str(db), *argv[depth:]], env={"CLUSTERQC_DEMO": "0"})


def _assert_one_line(res: Result, db: Path, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("judge:")), res.output
    assert lines[-1].startswith(f"error: {db}"), res.output
    for needle in needles:
        assert needle in lines[-1], res.output


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _good_db(path: Path) -> Path:
    with Store(path) as store:
        store.import_clusters(marked_clusters(8, start=100))  # ids apart from the demo's
    return path


def _corrupt_pages(path: Path) -> None:
    """Garbage over every page but the first (the header and sqlite_master stay readable)."""
    page = 16_384
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        for offset in range(page, size, page):
            fh.seek(offset)
            fh.write(os.urandom(page))


@pytest.mark.parametrize("kind", ["random bytes", "corrupted pages", "text file"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_reports_a_damaged_database_in_one_line(tmp_path: Path, args: list[str], kind: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _inputs(tmp_path)
    db = data / "c.db"
    if kind == "random bytes":
        db.write_bytes(os.urandom(40_000))
        why = "not a SQLite database"
    elif kind == "text file":
        db.write_text("cluster_id,closest_samples\n")
        why = "not a SQLite database"
    else:
        _good_db(db)
        _corrupt_pages(db)
        why = "damaged"
    before = _snapshot(data)
    res = _run(db, args, tmp_path)
    _assert_one_line(res, db, why)
    assert _snapshot(data) == before


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_names_a_missing_folder(tmp_path: Path, args: list[str]) -> None:
    _inputs(tmp_path)
    db = tmp_path / "no-such-folder" / "c.db"
    res = _run(db, args, tmp_path)
    _assert_one_line(res, db)
    assert not db.parent.exists()


# Commands that must write to the database to do their work.
WRITERS = [["import", "{tmp}/more.json"], ["propose", "--judge", "offline"], ["fewshot", "guideline", "--set", "{tmp}/g.txt"]]


def _writer_inputs(tmp: Path) -> None:
    (tmp / "more.json").write_text('{"Cluster_99": {"closest_samples": ["a"], "furthest_samples": ["b"]}}')
    (tmp / "g.txt").write_text("Be strict about watermarks.\n")


@pytest.mark.parametrize("args", WRITERS, ids=lambda a: " ".join(a[:2]))
def test_read_only_folder_is_one_line(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _writer_inputs(tmp_path)
    db = _good_db(data / "c.db")
    with read_only_folder(data):
        before = _snapshot(data)
        res = _run(db, args, tmp_path)
        after = _snapshot(data)
    _assert_one_line(res, db, "read-only")
    assert after == before


@pytest.mark.parametrize("args", WRITERS, ids=lambda a: " ".join(a[:2]))
def test_read_only_file_is_one_line(tmp_path: Path, args: list[str]) -> None:
    _writer_inputs(tmp_path)
    db = _good_db(tmp_path / "c.db")
    before = db.read_bytes()
    with read_only_file(db):
        res = _run(db, args, tmp_path)
    _assert_one_line(res, db, "read-only")
    assert db.read_bytes() == before


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_full_disk_names_the_database_and_changes_nothing(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "2m") as disk:
        db = _good_db(disk / "c.db")
        dump = _dump(db)
        fill(disk)
        res = _run(db, ["import", str(demo_path())], tmp_path)
        _assert_one_line(res, db, "disk is full")
        (disk / "filler").unlink()
        assert _dump(db) == dump


def test_full_disk_during_backup_names_the_backup_not_the_database(tmp_path: Path) -> None:
    db = _good_db(tmp_path / "c.db")
    with Store(db) as store:
        from clusterqc.ingest import import_files

        import_files(store, [demo_path()])
    with tiny_tmpfs(tmp_path / "disk", "128k") as disk:
        out = disk / "b.db"
        res = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(out)])
        assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
        assert res.output.startswith(f"error: {out}: the disk is full"), res.output
        assert ".partial" not in res.output
        assert list(disk.iterdir()) == []  # the partial snapshot is gone too


# --------------------------------------------------------------------------- item 15


def _other_app_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'x');")
    conn.close()
    return path


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_another_applications_database_is_refused_and_untouched(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _inputs(tmp_path)
    db = _other_app_db(data / "other.db")
    before = _snapshot(data)
    res = _run(db, args, tmp_path)
    _assert_one_line(res, db, "not a clusterqc database", "users")
    assert _snapshot(data) == before  # no new tables, no WAL switch, no -wal/-shm files


def test_a_newer_clusterqcs_database_is_refused_and_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = _good_db(data / "c.db")
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES"
                 " ('clusterqc', 'm042_from_the_future', '2030-01-01')")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _snapshot(data)
    for args in (["stats"], ["import", "--demo"], ["propose", "--judge", "offline"]):
        res = _run(db, args, tmp_path)
        _assert_one_line(res, db, "newer clusterqc", "m042_from_the_future")
    assert _snapshot(data) == before


def test_empty_and_new_files_are_fine(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for db in (empty, tmp_path / "new.db"):
        res = _run(db, ["stats"], tmp_path)
        assert res.exit_code == 0 and "clusters:   0" in res.output, res.output


def test_the_app_shows_one_line_and_leaves_another_apps_database_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    db = _other_app_db(tmp_path / "other.db")
    before = db.read_bytes()
    monkeypatch.setenv("CLUSTERQC_DB", str(db))
    monkeypatch.delenv("CLUSTERQC_DEMO", raising=False)  # the first start would import the demo
    app = Path(__file__).resolve().parent.parent / "app.py"
    at = AppTest.from_file(str(app), default_timeout=60).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("not a clusterqc database" in e for e in errors), errors
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


# --------------------------------------------------------------------------- item 4


def test_a_decision_keeps_the_proposal_it_answered_and_its_verdict(tmp_path: Path) -> None:
    """Store level of the stale-proposal bug: what was shown is what is recorded."""
    with Store(tmp_path / "d.db") as store:
        store.import_clusters(marked_clusters(2))
        shown = store.add_proposal(Proposal("Cluster_0", "m", "p1", Verdict.ACCEPTABLE, "looks fine"))
        decision = store.decide("Cluster_0", "ana", Verdict.ACCEPTABLE, proposal_id=shown)
        # A newer proposal arrives (another prompt version) with the opposite verdict.
        newer = store.add_proposal(Proposal("Cluster_0", "m", "p2", Verdict.UNACCEPTABLE, "watermarks"))
        assert newer is not None and newer != shown
        (logged,) = store.decisions("Cluster_0")
        assert (logged.proposal_id, logged.verdict, logged.agrees) == (shown, Verdict.ACCEPTABLE, True)
        assert logged.id == decision.id
        (label,) = store.labels("Cluster_0")
        assert (label["proposal_id"], label["verdict"], label["agrees"]) == (shown, "Acceptable", 1)
        assert store.cluster_label("Cluster_0") is Verdict.ACCEPTABLE
        # A proposal of another cluster cannot be recorded as the one answered.
        other = store.add_proposal(Proposal("Cluster_1", "m", "p1", Verdict.UNACCEPTABLE, "no"))
        with pytest.raises(ValueError, match="not a proposal for cluster Cluster_0"):
            store.decide("Cluster_0", "ana", Verdict.UNACCEPTABLE, proposal_id=other)
        assert len(store.decisions("Cluster_0")) == 1


def test_accepting_a_shown_proposal_records_it_not_a_newer_one(tmp_path: Path) -> None:
    with Store(tmp_path / "d.db") as store:
        store.import_clusters(marked_clusters(1))
        shown = store.add_proposal(Proposal("Cluster_0", "m", "p1", Verdict.UNACCEPTABLE, "watermarks"))
        assert shown is not None
        # While the reviewer looks at it, a newer run answers the opposite.
        store.add_proposal(Proposal("Cluster_0", "m", "p2", Verdict.ACCEPTABLE, "fine"))
        decision = store.accept_proposal("ana", shown)
        assert (decision.cluster_id, decision.proposal_id, decision.verdict, decision.agrees) == (
            "Cluster_0", shown, Verdict.UNACCEPTABLE, True)
        assert store.cluster_label("Cluster_0") is Verdict.UNACCEPTABLE
        unparsed = store.add_proposal(Proposal("Cluster_0", "m", "p3", None, "", raw="???", parse_error="no verdict"))
        with pytest.raises(ValueError, match="no parsed verdict"):
            store.accept_proposal("ana", unparsed)
        assert len(store.decisions("Cluster_0")) == 1


def test_hostile_table_names_are_counted_not_shown(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute('CREATE TABLE "[click](http://evil.example/x) **now**" (a)')
    conn.execute("CREATE TABLE notes (a)")
    conn.close()
    res = _run(db, ["stats"], tmp_path)
    _assert_one_line(res, db, "not a clusterqc database", "notes, 1 more")
    assert "evil" not in res.output and "**" not in res.output


def test_output_cut_off_by_a_pipe_is_not_reported_as_a_database_error(tmp_path: Path) -> None:
    """`clusterqc ... | head -1`: the reader leaving is no error of the database (it was 'error: DB: Broken pipe')."""
    db = tmp_path / "c.db"
    run = subprocess.run(
        f"{sys.executable} -m clusterqc import --demo --db {db} >/dev/null && "
        f"{sys.executable} -m clusterqc propose --judge llm --dry-run --db {db} | head -1",
        shell=True, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert run.stdout.startswith("judge:")
    assert "error" not in run.stderr and "Traceback" not in run.stderr, run.stderr
