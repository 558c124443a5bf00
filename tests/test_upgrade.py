"""Upgrade in place: a database written before datasets (tests/fixtures/pre_datasets.db, made
by the old code with a row in every table) opens with the current code and loses nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from clusterqc.export import export_file_bytes
from clusterqc.ingest import demo_path, import_files
from clusterqc.model import Verdict
from clusterqc.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
OLD = FIXTURES / "pre_datasets.db"

# Every table the old schema had and the columns whose values must come through unchanged.
KEPT = {
    "clusters": "id, nkey, closest, furthest, size, source, n_reviews, imported_at",
    "proposals": "id, cluster_id, judge, prompt_version, verdict, reason, raw, parse_error, latency_s,"
    " prompt_tokens, completion_tokens, created_at",
    "failures": "id, cluster_id, judge, prompt_version, error, created_at",
    "decisions": "id, cluster_id, reviewer, verdict, action, reverts, proposal_id, agrees, note, guideline, created_at",
    "labels": "cluster_id, reviewer, verdict, decision_id, agrees, note, decided_at",
    "holds": "cluster_id, reviewer, expires_at",
    "examples": "cluster_id, verdict, reason, decision_id, marked_by, created_at",
    "rechecks": "cluster_id, why, queued_at",
    "guidelines": "version, text, created_at",
    "settings": "key, value",
    "prompts": "version, name, template, parent, created_at",
}


def rows(path: Path, table: str, columns: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return sorted(con.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
    finally:
        con.close()


@pytest.fixture
def upgraded(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    shutil.copyfile(OLD, path)
    return path


def test_fixture_is_the_old_schema() -> None:
    names = [r[0] for r in sqlite3.connect(OLD).execute("SELECT name FROM _sqlite_migrations ORDER BY name")]
    assert names == ["m001_initial", "m002_examples", "m003_review_queue_index", "m004_browse_filter_indexes"]


def test_every_row_of_every_table_comes_through(upgraded: Path) -> None:
    before = {t: rows(upgraded, t, cols) for t, cols in KEPT.items()}
    assert all(before[t] for t in KEPT), "the fixture has a row in every table"
    old_dataset = dict(sqlite3.connect(upgraded).execute("SELECT id, dataset FROM clusters").fetchall())
    with Store(upgraded) as store:
        assert store.schema_version()[4:] == [
            "m005_datasets", "m006_review_skips", "m007_learned_judge", "m008_cluster_evidence"
        ]
        assert store._one("PRAGMA foreign_key_check") is None and store.integrity_check() == "ok"
    for table, cols in KEPT.items():
        assert rows(upgraded, table, cols) == before[table], table
    # Clusters went in the dataset their field named, else `default`; every reference followed.
    new = dict(sqlite3.connect(upgraded).execute("SELECT id, dataset FROM clusters").fetchall())
    assert new == {cid: ds or "default" for cid, ds in old_dataset.items()}
    assert set(new.values()) == {"default", "pool-b"}
    for table in ("proposals", "failures", "decisions", "labels", "holds", "examples", "rechecks"):
        mismatched = sqlite3.connect(upgraded).execute(
            f"SELECT count(*) FROM {table} t JOIN clusters c ON c.id = t.cluster_id WHERE t.dataset != c.dataset"
        ).fetchone()[0]
        assert mismatched == 0, table


def test_the_upgraded_database_works_as_before(upgraded: Path) -> None:
    with Store(upgraded) as store:
        assert [d["name"] for d in store.datasets()] == ["default", "pool-b"]
        assert {d["name"]: d["clusters"] for d in store.datasets()} == {"default": 60, "pool-b": 3}
        # The recomputed content hashes match what an import computes: re-importing the same
        # demo file into its dataset changes nothing.
        assert import_files(store, [demo_path()], dataset="default").unchanged == 60
        assert store.cluster_label("Cluster_0", dataset="default") is not None
        assert len(store.proposals_for("Cluster_0", dataset="default")) == 2  # offline + gpt-test
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.conn.execute("UPDATE decisions SET note = 'x'")
        # The queue, the undo and a decision still work, per dataset.
        assert store.next_cluster("dora", dataset="pool-b") == "B_2"  # B_0 is reviewed, carol holds B_1
        undone = store.undo_last("alice", dataset="default")
        assert undone is not None and undone.cluster_id == "Cluster_12"
        decided = store.decide("B_1", "dora", Verdict.ACCEPTABLE, dataset="pool-b")
        assert decided.dataset == "pool-b" and decided.content_hash
        prompt = store.get_prompt("ex-v1")
        assert {(e["dataset"], e["cluster_id"]) for e in prompt["examples"]} == {
            ("default", "Cluster_4"), ("default", "Cluster_8"), ("default", "Cluster_5")
        }


def test_export_after_the_upgrade_has_the_same_rows_plus_the_dataset(upgraded: Path) -> None:
    old = [json.loads(line) for line in (FIXTURES / "pre_datasets_export.jsonl").read_text().splitlines()]
    with Store(upgraded) as store:
        data, n, _ = export_file_bytes(store, "jsonl", include_unreviewed=True)
    new = [json.loads(line) for line in data.decode().splitlines()]
    assert n == len(old) == 63
    datasets = {r["cluster_id"]: r.pop("dataset") for r in new}
    assert sorted(new, key=lambda r: r["cluster_id"]) == sorted(old, key=lambda r: r["cluster_id"])
    assert datasets["B_0"] == "pool-b" and datasets["Cluster_0"] == "default"


def test_opening_again_changes_nothing(upgraded: Path) -> None:
    with Store(upgraded):
        pass
    dump = "\n".join(sqlite3.connect(upgraded).iterdump())
    with Store(upgraded) as store:
        assert store.schema_version().count("m005_datasets") == 1
    assert "\n".join(sqlite3.connect(upgraded).iterdump()) == dump
