"""`clusterqc import` and `clusterqc cluster` as a user runs them: messages, exit codes, and a
database that a failed command leaves untouched (or never creates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.store import Store
from test_ingest import dump, sample_clusters, write_format

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def db_dump(db: Path) -> str:
    with Store(db) as store:
        return dump(store)


def test_import_reimport_and_replace(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    path = write_format("luvdatacomp", sample_clusters(), tmp_path)
    assert run("import", str(path), "--db", str(db)) == (
        0, "imported 3 clusters from 1 file into datasets clusters, datacomp-small (0 unchanged, 0 replaced)\n", ""
    )
    assert run("import", str(path), "--db", str(db))[1] == (
        "imported 0 clusters from 1 file into datasets clusters, datacomp-small (3 unchanged, 0 replaced)\n"
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Cluster_2"]["closest_samples"] = ["changed"]
    path.write_text(json.dumps(data), encoding="utf-8")
    before = db_dump(db)
    code, out, err = run("import", str(path), "--db", str(db))
    assert code == 1 and out == ""
    assert err.startswith(f"error: {path}: ") and "Cluster_2" in err and "--replace" in err
    assert err.count("\n") == 1
    assert db_dump(db) == before
    assert run("import", str(path), "--db", str(db), "--replace")[1] == (
        "imported 0 clusters from 1 file into datasets clusters, datacomp-small (2 unchanged, 1 replaced)\n"
    )
    with Store(db) as store:
        assert store.get_cluster("Cluster_2", dataset="datacomp-small").closest_texts() == ["changed"]


def test_import_demo_and_dataset(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert run("import", "--demo", "--db", str(db), "--dataset", "datacomp-small")[1] == (
        "imported 60 clusters from 1 file into dataset datacomp-small (0 unchanged, 0 replaced)\n"
    )
    with Store(db) as store:
        assert store.count_clusters() == 60
        assert {store.get_cluster(i).dataset for i in store.cluster_ids()} == {"datacomp-small"}


def test_db_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("CLUSTERQC_DB", str(db))
    assert run("import", str(FIXTURES / "cluster_samples_luvdatacomp_format.json"))[0] == 0
    with Store(db) as store:
        assert store.cluster_ids() == ["Cluster_25", "Cluster_60"]


def test_several_files_and_a_bad_one_imports_nothing(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    good = write_format("csv", sample_clusters(), tmp_path, "good")
    bad = tmp_path / "bad.jsonl"
    content = b'{"id": "x", "closest_samples": ["ok"], "furthest_samples": ["\xff"]}\n'
    bad.write_bytes(content)
    at = content.index(b"\xff")
    run("import", str(FIXTURES / "cluster_samples_luvdatacomp_format.json"), "--db", str(db))
    before = db_dump(db)
    code, out, err = run("import", str(good), str(bad), "--db", str(db))
    assert code == 1 and out == ""
    assert err == f"error: {bad}: line 1, byte {at}: not valid UTF-8 (byte 0xff at column {at + 1}); save the file as UTF-8\n"
    assert db_dump(db) == before
    assert run("import", str(good), "--db", str(db))[1] == "imported 3 clusters from 1 file into datasets datacomp-small, good (0 unchanged, 0 replaced)\n"


def test_failed_import_does_not_create_the_database(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    code, _, err = run("import", str(tmp_path / "nope.json"), "--db", str(db))
    assert code == 1 and err == f"error: {tmp_path / 'nope.json'}: file: no such file\n"
    assert not db.exists()


def test_import_needs_a_file(tmp_path: Path) -> None:
    code, _, err = run("import", "--db", str(tmp_path / "x.db"))
    assert code == 1 and "give one or more cluster files" in err


def test_cluster_command_writes_importable_files(tmp_path: Path) -> None:
    src = tmp_path / "emb.jsonl"
    src.write_text(
        "".join(
            json.dumps({"key": f"k{i}", "caption": f"caption {i} ü", "vec": [float(i % 4), float(i // 4)]}) + "\n"
            for i in range(40)
        ),
        encoding="utf-8",
    )
    out, assignments, db = tmp_path / "c.json", tmp_path / "a.csv", tmp_path / "q.db"
    code, stdout, err = run(
        "cluster", str(src), "--k", "4", "--id-col", "key", "--text-col", "caption", "--emb-col", "vec",
        "--out", str(out), "--assignments", str(assignments),
    )
    assert (code, err) == (0, "")
    assert stdout.startswith("clustered 40 samples (2-d) into 4 clusters")
    assert len(assignments.read_text(encoding="utf-8").splitlines()) == 41
    assert run("import", str(out), "--db", str(db))[1] == "imported 4 clusters from 1 file into dataset c (0 unchanged, 0 replaced)\n"


def test_cluster_command_errors_are_one_line(tmp_path: Path) -> None:
    src = tmp_path / "emb.jsonl"
    src.write_text('{"key": "a", "caption": "c", "vec": [1, 2]}\n{"key": "b", "caption": "c"}\n', encoding="utf-8")
    code, out, err = run("cluster", str(src), "--k", "1", "--id-col", "key", "--emb-col", "vec", "--out", str(tmp_path / "o.json"))
    assert code == 1 and out == ""
    assert err.startswith(f"error: {src}: line 2: missing column 'vec'") and err.count("\n") == 1
    assert not (tmp_path / "o.json").exists()
