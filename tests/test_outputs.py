"""Output paths that would destroy the database, an input or another output are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusterqc.outputs import OutputError, check_outputs


def test_database_and_its_side_files_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    db.write_bytes(b"x")
    for target in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), tmp_path / "." / "c.db"):
        with pytest.raises(OutputError, match="that is the database"):
            check_outputs([("--out", target)], db=db)


def test_symlink_and_hard_link_to_an_input_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    hard = tmp_path / "hard.jsonl"
    os.link(source, hard)
    for target in (link, hard):
        with pytest.raises(OutputError, match="that is the input INPUT"):
            check_outputs([("--out", target)], inputs=[("INPUT", source)])


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="are the same file"):
        check_outputs([("--out", tmp_path / "a.json"), ("--assignments", tmp_path / "sub" / ".." / "a.json")])


def test_distinct_paths_pass_and_none_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    db.write_bytes(b"x")
    check_outputs([("--out", tmp_path / "a.csv"), ("--centroids", None)], inputs=[("INPUT", tmp_path / "in")], db=db)
