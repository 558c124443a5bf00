"""Files in and out (issue 11, items 1, 10, 11, 16, 18, 19): hostile inputs and outputs through the real CLI.

Outputs never land on the database, an input or each other; killed runs' temporary files are
cleaned; outputs get the umask's mode; bad assignments files and cluster ids are one line with
the file and the row; CSV cells cannot start a formula behind blanks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from mounts import fill, read_only_folder, tiny_tmpfs

from clusterqc.cli import cli
from clusterqc.export import neutralise_formulas
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store
from clusterqc.subset import SubsetError, build_subset_from_upload

UID = "0123456789abcdef0123456789abcdef"


def _store(path: Path) -> Path:
    with Store(path) as store:
        store.import_clusters([Cluster(f"Cluster_{i}", (Sample(f"c{i}"),), (Sample(f"f{i}"),)) for i in range(4)])
        for i in range(4):
            pid = store.add_proposal(Proposal(f"Cluster_{i}", "m", "v1", Verdict.ACCEPTABLE, "fine"))
            store.decide(f"Cluster_{i}", "ann", Verdict.ACCEPTABLE, proposal_id=pid)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error_line(res: Result, *needles: str) -> str:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: "), res.output
    for needle in needles:
        assert needle in res.output, res.output
    return res.output


# --------------------------------------------------------------------------- item 1


def _assignments(path: Path) -> Path:
    path.write_text(f"uid,cluster_id\n{UID},Cluster_1\n")
    return path


@pytest.mark.parametrize("side", ["", "-wal", "-shm"])
def test_export_and_export_uids_never_write_over_the_database(tmp_path: Path, side: str) -> None:
    db = _store(tmp_path / "c.db")
    keeper = Store(db)  # held open so the -wal and -shm files exist while the commands run
    try:
        assign = _assignments(tmp_path / "assign.csv")
        target = f"{db}{side}"
        before = _files(tmp_path)
        _one_error_line(_invoke("export", "--db", str(db), "--out", target, "--format", "csv"), "that is the database")
        _one_error_line(_invoke("export-uids", "--db", str(db), "--assignments", str(assign), "--out", target),
                        "that is the database")
        _one_error_line(_invoke("backup", "--db", str(db), "--out", target, "--force"), "that is the database")
        # the database itself through another spelling and a hard link
        os.link(db, tmp_path / "hard.db")
        _one_error_line(_invoke("export", "--db", str(db), "--out", str(tmp_path / "hard.db"), "--format", "csv"),
                        "that is the database")
        (tmp_path / "hard.db").unlink()
        assert _files(tmp_path) == before
        assert keeper.count_clusters() == 4 and len(keeper.decisions()) == 4
    finally:
        keeper.close()


def test_export_uids_never_writes_over_its_assignments(tmp_path: Path) -> None:
    db = _store(tmp_path / "c.db")
    assign = _assignments(tmp_path / "assign.npy")  # named like an output: still CSV inside
    before = assign.read_bytes()
    _one_error_line(_invoke("export-uids", "--db", str(db), "--assignments", str(assign), "--out", str(assign)),
                    "that is the input --assignments")
    link = tmp_path / "link.npy"
    link.symlink_to(assign)
    _one_error_line(_invoke("export-uids", "--db", str(db), "--assignments", str(assign), "--out", str(link)),
                    "that is the input --assignments")
    assert assign.read_bytes() == before


# --------------------------------------------------------------------------- item 16


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_backup_partials_are_cleaned_with_a_message(tmp_path: Path) -> None:
    db = _store(tmp_path / "c.db")
    out = tmp_path / "snap.db"
    dead = _dead_pid()
    stale = [tmp_path / f".snap.db.{dead}.partial{s}" for s in ("", "-wal", "-shm")]
    stale.append(tmp_path / ".snap.db.k3j4.partial")  # no pid: an older clusterqc's name
    for p in stale:
        p.write_bytes(b"x" * 1000)
    live = tmp_path / f".snap.db.{os.getppid()}.partial"  # a run still going: left alone
    live.write_bytes(b"y")
    res = _invoke("backup", "--db", str(db), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "removed 4 stale temporary files" in res.output and str(out) in res.output
    assert not any(p.exists() for p in stale) and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.db", "c.db-shm", "c.db-wal", "snap.db", live.name]) \
        or sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.db", "snap.db", live.name])


@pytest.mark.parametrize("command", ["export", "export-uids"])
def test_stale_tmp_files_of_the_same_output_are_cleaned(tmp_path: Path, command: str) -> None:
    db = _store(tmp_path / "c.db")
    out = tmp_path / ("labels.csv" if command == "export" else "subset.npy")
    dead = _dead_pid()
    stale = [tmp_path / f".{out.name}.{dead}.abc123.tmp", tmp_path / f".{out.name}.x8y2k1.tmp"]
    other = tmp_path / f".other.csv.{dead}.abc.tmp"  # another output's: not ours to remove
    for p in [*stale, other]:
        p.write_bytes(b"partial")
    args = ["--assignments", str(_assignments(tmp_path / "a.csv"))] if command == "export-uids" else []
    res = _invoke(command, "--db", str(db), *args, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "removed 2 stale temporary files" in res.output
    assert not any(p.exists() for p in stale) and other.exists() and out.exists()


@pytest.mark.parametrize("command", ["export", "export-uids", "backup"])
def test_outputs_honour_the_umask(tmp_path: Path, command: str) -> None:
    db = _store(tmp_path / "c.db")
    out = tmp_path / {"export": "labels.csv", "export-uids": "subset.npy", "backup": "snap.db"}[command]
    args = ["--assignments", str(_assignments(tmp_path / "a.csv"))] if command == "export-uids" else []
    old = os.umask(0o002)
    try:
        res = _invoke(command, "--db", str(db), *args, "--out", str(out))
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert out.stat().st_mode & 0o777 == 0o664


# --------------------------------------------------------------------------- item 19 (messages)


def test_full_disk_on_export_names_the_output(tmp_path: Path) -> None:
    db = _store(tmp_path / "c.db")
    with Store(db) as store:
        store.decide("Cluster_0", "ann", Verdict.ACCEPTABLE, note="n" * 200_000)
    with tiny_tmpfs(tmp_path / "disk", "64k") as disk:
        fill(disk)
        (disk / "filler").unlink()
        (disk / "filler2").write_bytes(b"\0" * 32_768)
        for command, out in (("export", disk / "labels.jsonl"), ("backup", disk / "snap.db")):
            res = _invoke(command, "--db", str(db), "--out", str(out))
            line = _one_error_line(res, str(out))
            assert "No space left" in line or "disk is full" in line, line
            assert ".tmp" not in line and ".partial" not in line
        assert sorted(p.name for p in disk.iterdir()) == ["filler2"]


def test_permission_denied_names_the_output_not_a_hidden_temp(tmp_path: Path) -> None:
    db = _store(tmp_path / "c.db")
    folder = tmp_path / "out"
    folder.mkdir()
    assign = _assignments(tmp_path / "a.csv")
    with read_only_folder(folder):
        for args in (["export", "--out", str(folder / "labels.csv")],
                     ["export-uids", "--assignments", str(assign), "--out", str(folder / "subset.npy")],
                     ["backup", "--out", str(folder / "snap.db")]):
            res = _invoke(args[0], "--db", str(db), *args[1:])
            line = _one_error_line(res, args[-1])
            assert ".tmp" not in line and ".partial" not in line, line
        assert list(folder.iterdir()) == []


def test_row_numbers_match_between_import_and_export_uids(tmp_path: Path) -> None:
    """Both count CSV rows as a spreadsheet does (the header is row 1) and Parquet rows from 1."""
    db = _store(tmp_path / "c.db")
    ragged_import = tmp_path / "clusters.csv"
    ragged_import.write_text('cluster_id,closest_samples,furthest_samples\nA,"[""a""]","[""b""]"\nB,"[""a""]"\n')
    ragged_assign = tmp_path / "assign.csv"
    ragged_assign.write_text(f"uid,cluster_id\n{UID},Cluster_1\n{UID}\n")
    imp = _one_error_line(_invoke("import", str(ragged_import), "--db", str(tmp_path / "other.db")), "row 3")
    exp = _one_error_line(_invoke("export-uids", "--db", str(db), "--assignments", str(ragged_assign),
                                  "--out", str(tmp_path / "s.npy")), "row 3")
    assert "row 3" in imp and "row 3" in exp
    # A bad value on the 2nd data row of a Parquet file is row 2 in both.
    pq.write_table(pa.table({"cluster_id": ["A", "B"], "closest_samples": [["a"], ["a"]],
                             "furthest_samples": [["b"], None]}), tmp_path / "clusters.parquet")
    pq.write_table(pa.table({"uid": [UID, "nothex"], "cluster_id": ["Cluster_1", "Cluster_2"]}),
                   tmp_path / "assign.parquet")
    _one_error_line(_invoke("import", str(tmp_path / "clusters.parquet"), "--db", str(tmp_path / "other.db")), "row 2")
    _one_error_line(_invoke("export-uids", "--db", str(db), "--assignments", str(tmp_path / "assign.parquet"),
                            "--out", str(tmp_path / "s.npy")), "row 2")
    assert not (tmp_path / "other.db").exists() and not (tmp_path / "s.npy").exists()


# --------------------------------------------------------------------------- item 10


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"uid": [UID] * 500, "cluster_id": ["Cluster_1"] * 500}), buf)
    return buf.getvalue()


BAD_ASSIGNMENTS = {
    "ragged.csv": (f"uid,cluster_id\n{UID},Cluster_1\n{UID},Cluster_2,extra\n".encode(), "row 3"),
    "short.csv": (f"uid,cluster_id\n{UID},Cluster_1\n{UID}\n{UID},Cluster_2\n".encode(), "row 3"),
    "unterminated.csv": (f'uid,cluster_id\n{UID},Cluster_1\n{UID},"Cluster_2\n'.encode(), "row 3"),
    "swallowing.csv": (f'uid,cluster_id,note\n{UID},Cluster_1,"oops\n{UID},Cluster_2,x\n'.encode(), "row 2"),
    "binary.csv": (bytes(range(256)) * 20, "row 1"),
    "truncated.parquet": (_parquet_bytes()[:300], "not a readable Parquet file"),
    "tail-cut.parquet": (_parquet_bytes()[:-20], "not a readable Parquet file"),
    "binary.parquet": (os.urandom(4096), "not a Parquet file"),
    "header-only-magic.parquet": (b"PAR1" + os.urandom(4096), "not a readable Parquet file"),
}


@pytest.mark.parametrize("name", sorted(BAD_ASSIGNMENTS))
def test_bad_assignments_are_one_line_with_file_and_row(tmp_path: Path, name: str) -> None:
    data, where = BAD_ASSIGNMENTS[name]
    db = _store(tmp_path / "c.db")
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "subset.npy"
    _one_error_line(_invoke("export-uids", "--db", str(db), "--assignments", str(path), "--out", str(out)),
                    str(path), where)
    assert not out.exists() and not list(tmp_path.glob(".subset*"))
    # The Export page's upload goes through the same reader; its message names the upload.
    with Store(db) as store, pytest.raises(SubsetError) as err:
        build_subset_from_upload(store, name, data, ["Acceptable"])
    assert str(err.value).startswith(f"{name}: ") and where in str(err.value) and "/tmp" not in str(err.value)


# --------------------------------------------------------------------------- item 11


def _cluster_json(cid: str) -> dict[str, object]:
    return {"cluster_id": cid, "closest_samples": ["a"], "furthest_samples": ["b"]}


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet", "luvdatacomp"])
def test_control_characters_in_cluster_ids_are_refused_at_import(tmp_path: Path, fmt: str, char: str) -> None:
    bad = f"Cluster{char}7"
    rows = [_cluster_json("Cluster_1"), _cluster_json(bad)]
    path = tmp_path / f"clusters.{ {'luvdatacomp': 'json'}.get(fmt, fmt) }"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "luvdatacomp":
        path.write_text(json.dumps({r["cluster_id"]: {k: v for k, v in r.items() if k != "cluster_id"} for r in rows}))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["cluster_id", "closest_samples", "furthest_samples"])
            for r in rows:
                w.writerow([r["cluster_id"], json.dumps(r["closest_samples"]), json.dumps(r["furthest_samples"])])
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    db = _store(tmp_path / "c.db")
    before = db.read_bytes()
    where = {"json": "item 2", "jsonl": "line 2", "csv": "row 3", "parquet": "row 2", "luvdatacomp": "key "}[fmt]
    _one_error_line(_invoke("import", str(path), "--db", str(db)), str(path), where, "control character",
                    ascii(char))
    assert db.read_bytes() == before
    with Store(db) as store:
        assert store.count_clusters() == 4


# --------------------------------------------------------------------------- item 18

BLANKS = [" ", "  ", "\u00a0", "\u3000", "\u200b", "\ufeff", "\n", "\r\n", "\t", " \u00a0\u3000\u200b\ufeff\n"]


@pytest.mark.parametrize("blank", BLANKS, ids=[ascii(b) for b in BLANKS])
@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\uff1d"])
def test_formula_behind_blanks_is_neutralised(blank: str, start: str) -> None:
    cell = f"{blank}{start}HYPERLINK(\"http://x\")"
    assert neutralise_formulas(pa.array([cell, f"a{cell}", "plain"])).to_pylist() == ["'" + cell, f"a{cell}", "plain"]


def test_exported_csv_note_behind_blanks_cannot_start_a_formula(tmp_path: Path) -> None:
    db = _store(tmp_path / "c.db")
    note = "\u00a0\u3000=HYPERLINK(\"http://evil\",\"click\")"
    with Store(db) as store:
        store.decide("Cluster_2", "ann", Verdict.UNACCEPTABLE, note=note)
    out = tmp_path / "labels.csv"
    assert _invoke("export", "--db", str(db), "--out", str(out)).exit_code == 0
    with open(out, newline="", encoding="utf-8") as fh:
        notes = [row["note"] for row in csv.DictReader(fh)]
    assert "'" + note in notes and note not in notes


# --------------------------------------------------------------------------- sanity: the happy path still works


def test_export_uids_still_writes_the_subset(tmp_path: Path) -> None:
    db = _store(tmp_path / "c.db")
    out = tmp_path / "subset.npy"
    res = _invoke("export-uids", "--db", str(db), "--assignments", str(_assignments(tmp_path / "a.csv")),
                  "--out", str(out))
    assert res.exit_code == 0, res.output
    assert len(np.load(out)) == 1


@pytest.mark.parametrize("name", ["binary.parquet", "truncated.parquet", "unterminated.csv", "ragged.csv"])
def test_export_page_upload_of_a_bad_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       name: str) -> None:
    from streamlit.testing.v1 import AppTest

    db = _store(tmp_path / "app.db")
    monkeypatch.setenv("CLUSTERQC_DB", str(db))
    monkeypatch.setenv("CLUSTERQC_DEMO", "0")
    data, where = BAD_ASSIGNMENTS[name]
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    at.query_params["reviewer"] = "alice"
    at.run()
    at.switch_page("views/export.py")
    at.run()
    at.file_uploader(key="export_assignments").set_value((name, data, "application/octet-stream"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (err,) = at.main.error
    assert err.value.startswith(f"{name}: ") and where in err.value and "\n" not in err.value, err.value
    assert not at.main.get("download_button") or all("npy" not in str(b.proto) for b in at.main.get("download_button"))
