"""`clusterqc backup`: a consistent snapshot while another process keeps writing decisions."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.model import Verdict
from clusterqc.store import Store
from reliability_workers import derived_matches_log, make_clusters, note_for

WORKERS = Path(__file__).with_name("reliability_workers.py")


def _seed(db: Path, n: int = 50) -> None:
    with Store(db) as store:
        store.import_clusters(make_clusters(n), source="seed")


def _start_writer(db: Path, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKERS), "decide", str(db), "writer", str(count), "--undo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _wait_for_decisions(proc: subprocess.Popen[str], n: int) -> None:
    assert proc.stdout is not None
    seen = 0
    while seen < n:
        line = proc.stdout.readline()
        assert line, "writer ended early"
        seen += line.startswith("decided")


def test_snapshot_while_another_process_writes(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    _seed(db)
    writer = _start_writer(db, 100_000)
    try:
        _wait_for_decisions(writer, 50)
        snaps = []
        for k in range(3):
            out = tmp_path / f"snap{k}.db"
            result = subprocess.run(
                [sys.executable, "-m", "clusterqc", "backup", "--db", str(db), "--out", str(out)],
                capture_output=True,
                text=True,
            )
            assert result.returncode == 0, result.stderr
            assert writer.poll() is None, "the writer must still be writing while the snapshot is taken"
            snaps.append(out)
            time.sleep(0.2)
    finally:
        writer.kill()
        writer.wait()
    counts = []
    for out in snaps:
        assert not list(tmp_path.glob(f".{out.name}*")), "temporary snapshot files left behind"
        with Store(out) as snap:
            assert snap.integrity_check() == "ok"
            notes = [d.note for d in snap.decisions() if d.action == "decide"]
            undos = [d for d in snap.decisions() if d.action == "undo"]
        # A consistent snapshot holds a prefix of the writer's work: no gaps, no duplicates.
        assert notes == [note_for("writer", i) for i in range(len(notes))]
        assert len(undos) in {(len(notes) - 1) // 7, (len(notes) - 1) // 7 + 1}
        assert derived_matches_log(out, tmp_path)
        counts.append(len(notes))
    assert counts[0] >= 50 and counts == sorted(counts) and counts[-1] > counts[0]


def test_snapshot_is_a_working_database(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    _seed(db, 3)
    with Store(db) as store:
        store.decide("Cluster_1", "ana", Verdict.ACCEPTABLE, note="kept")
    out = tmp_path / "snap.db"
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "backed up" in result.output
    # Restoring is copying the snapshot into place: it opens and carries on.
    with Store(out) as restored:
        assert restored.cluster_label("Cluster_1") is Verdict.ACCEPTABLE
        restored.decide("Cluster_2", "ana", Verdict.UNACCEPTABLE)
        assert restored.stats().decisions == 2


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    _seed(db, 2)
    out = tmp_path / "snap.db"
    out.write_bytes(b"precious")
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 1
    assert "already exists" in result.output and str(out) in result.output
    assert out.read_bytes() == b"precious"
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    with Store(out) as snap:
        assert snap.count_clusters() == 2


def test_missing_database_is_a_user_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    out = tmp_path / "snap.db"
    result = CliRunner().invoke(cli, ["backup", "--db", str(missing), "--out", str(out)])
    assert result.exit_code == 1
    assert "no such database" in result.output
    assert not missing.exists() and not out.exists()


def test_backup_onto_the_database_itself_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    _seed(db, 2)
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(db), "--force"])
    assert result.exit_code == 1
    with Store(db) as store:
        assert store.count_clusters() == 2


def test_backup_creates_the_folders_of_out(tmp_path: Path) -> None:
    """`clusterqc backup --out backups/hourly.db` works on the first run (the README's cron line)."""
    db = tmp_path / "live.db"
    _seed(db, 2)
    out = tmp_path / "backups" / "2026" / "hourly.db"
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Store(out) as snap:
        assert snap.count_clusters() == 2


def test_backup_under_a_file_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    _seed(db, 2)
    (tmp_path / "backups").write_text("not a folder")
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(tmp_path / "backups" / "x" / "h.db")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "is a file, not a directory" in result.output
    assert (tmp_path / "backups").read_text() == "not a folder"


def test_failed_backup_removes_the_folders_it_made(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    out = tmp_path / "backups" / "h.db"
    db = tmp_path / "live.db"
    db.write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(cli, ["backup", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output == f"error: {db}: not a SQLite database (file is not a database)\n"
    assert not (tmp_path / "backups").exists() and not missing.exists()
