"""`clusterqc import-decisions`: labels made elsewhere become decisions, all or nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import marked_clusters

from clusterqc.cli import cli
from clusterqc.import_decisions import import_decisions
from clusterqc.ingest import IngestError
from clusterqc.model import Verdict
from clusterqc.store import Store


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def snapshot(db: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Everything a decision import could change: the log, the labels, the review counts."""
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute("SELECT * FROM decisions ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM labels ORDER BY cluster_id, reviewer").fetchall(),
            conn.execute("SELECT id, n_reviews FROM clusters ORDER BY id").fetchall(),
        )
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "d.db"
    with Store(path) as store:
        store.import_clusters(marked_clusters(6))
        store.decide("Cluster_5", "ann", Verdict.ACCEPTABLE, note="earlier")
    return path


def test_csv_import_derives_labels_exactly_as_single_decisions(db: Path, tmp_path: Path) -> None:
    rows = [("Cluster_0", "Acceptable", "fine"), ("Cluster_1", "unacceptable", ""), ("Cluster_5", "Unacceptable", "changed my mind")]
    path = tmp_path / "manual.csv"
    path.write_text("cluster_id,label,note\n" + "".join(f"{c},{v},{n}\n" for c, v, n in rows), encoding="utf-8")
    code, out = run("import-decisions", str(path), "--reviewer", "bob", "--db", str(db))
    assert code == 0, out
    assert "imported 3 decisions by 'bob'" in out

    # The same verdicts made one by one through Store.decide in a twin database.
    twin = tmp_path / "twin.db"
    with Store(twin) as store:
        store.import_clusters(marked_clusters(6))
        store.decide("Cluster_5", "ann", Verdict.ACCEPTABLE, note="earlier")
        for cid, verdict, note in rows:
            store.decide(cid, "bob", Verdict.parse(verdict), note=note)
    strip = lambda labels: [(l["cluster_id"], l["reviewer"], l["verdict"], l["note"]) for l in labels]
    with Store(db) as a, Store(twin) as b:
        assert sorted(strip(a.labels())) == sorted(strip(b.labels()))
        assert [(r[0], r[1]) for r in snapshot(db)[2]] == [(r[0], r[1]) for r in snapshot(twin)[2]]
        assert a.queue_count("bob") == b.queue_count("bob") == 3
        assert {d.action for d in a.decisions(reviewer="bob")} == {"decide"}


def test_jsonl_import_and_rerun_changes_nothing(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "old_tool.jsonl"
    lines = [{"cluster_id": "Cluster_2", "label": "Unacceptable", "note": "file names"},
             {"cluster_id": "Cluster_3", "label": "Acceptable"}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    assert run("import-decisions", str(path), "--reviewer", "cy", "--db", str(db))[0] == 0
    before = snapshot(db)
    code, out = run("import-decisions", str(path), "--reviewer", "cy", "--db", str(db))
    assert code == 0 and "imported 0 decisions" in out and "2 already standing" in out
    assert snapshot(db) == before
    with Store(db) as store:
        assert store.cluster_label("Cluster_2") is Verdict.UNACCEPTABLE


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad_cluster.csv", "cluster_id,label\nCluster_0,Acceptable\nCluster_99,Acceptable\n",
         "bad_cluster.csv: line 3: unknown cluster 'Cluster_99'"),
        ("bad_label.csv", "cluster_id,label\nCluster_0,Acceptable\nCluster_1,Maybe\n",
         "bad_label.csv: line 3: unknown label 'Maybe'"),
        ("bad_label.jsonl", '{"cluster_id": "Cluster_0", "label": "Acceptable"}\n{"cluster_id": "Cluster_1", "label": null}\n',
         "bad_label.jsonl: line 2: unknown label None"),
        ("dupe.csv", "cluster_id,label\nCluster_0,Acceptable\nCluster_0,Unacceptable\n",
         "dupe.csv: line 3: cluster 'Cluster_0' is already labelled on line 2"),
        ("no_label.csv", "cluster_id,verdict\nCluster_0,Acceptable\n", "no_label.csv: line 1: no 'label' column"),
        ("broken.jsonl", '{"cluster_id": "Cluster_0", "label": "Acceptable"}\n{"cluster_id": \n',
         "broken.jsonl: line 2: malformed JSON"),
        ("empty.csv", "cluster_id,label\n", "empty.csv: no decisions in file"),
    ],
)
def test_bad_row_is_one_line_and_nothing_is_written(db: Path, tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    before = snapshot(db)
    code, out = run("import-decisions", str(path), "--reviewer", "bob", "--db", str(db))
    assert code == 1
    assert out.count("\n") == 1 and out.startswith("error: ") and expected in out, out
    assert "Traceback" not in out
    assert snapshot(db) == before  # the good first row was not written either


def test_failure_inside_the_transaction_rolls_every_row_back(db: Path) -> None:
    """decide_many is one transaction: a row the database refuses undoes the rows before it."""
    before = snapshot(db)
    with Store(db) as store, pytest.raises(sqlite3.IntegrityError):
        store.decide_many("bob", [("Cluster_0", Verdict.ACCEPTABLE, ""), ("Cluster_404", Verdict.ACCEPTABLE, "")])
    assert snapshot(db) == before


def test_missing_database_and_file_are_one_line_errors(db: Path, tmp_path: Path) -> None:
    code, out = run("import-decisions", str(tmp_path / "nope.csv"), "--reviewer", "bob", "--db", str(db))
    assert code == 1 and "nope.csv: no such file" in out
    code, out = run("import-decisions", str(tmp_path / "nope.csv"), "--reviewer", "bob", "--db", str(tmp_path / "x.db"))
    assert code == 1 and "no such database" in out and not (tmp_path / "x.db").exists()


def test_library_call_refuses_blank_reviewer(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("cluster_id,label\nCluster_0,Acceptable\n", encoding="utf-8")
    with Store(db) as store, pytest.raises(ValueError, match="reviewer"):
        import_decisions(store, path, "  ")
    with pytest.raises(IngestError):
        from clusterqc.import_decisions import read_decisions

        read_decisions(tmp_path)
