"""Datasets: several clusterings with overlapping ids in one database, driven as a user does
(the real CLI on a real SQLite file), plus what `import --replace` does to decisions made on
the old content (issue 11, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc import evaluate as ev
from clusterqc import fewshot
from clusterqc.cli import cli
from clusterqc.model import Verdict
from clusterqc.store import DatasetError, Store

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_clusterings(folder: Path, n: int = 4) -> list[Path]:
    """Three cluster files that all name their clusters Cluster_0..Cluster_{n-1}, with other content."""
    paths = []
    for name, word in (("caption_k4", "caption"), ("image_k4", "image"), ("pool_b", "pool")):
        data = {
            f"Cluster_{i}": {
                "closest_samples": [f"{word} view of a red bicycle, {i}", f"a {word} of a harbour at dusk {i}"],
                "furthest_samples": ["IMG_0001.JPG" if i % 2 else f"{word} market stall with fruit {i}"],
                "size": 10 + i,
            }
            for i in range(n)
        }
        path = folder / f"{name}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, list[Path]]:
    db = tmp_path / "three.db"
    paths = write_clusterings(tmp_path)
    code, out, err = run("import", *map(str, paths), "--db", str(db))
    assert (code, err) == (0, "")
    assert out == "imported 12 clusters from 3 files into datasets caption_k4, image_k4, pool_b (0 unchanged, 0 replaced)\n"
    return db, paths


def test_overlapping_ids_import_as_three_datasets_and_reimport_is_a_no_op(three: tuple[Path, list[Path]]) -> None:
    db, paths = three
    with Store(db) as store:
        dump = "\n".join(store.conn.iterdump())
        assert store.dataset_names() == ["caption_k4", "image_k4", "pool_b"]
        assert store.get_cluster("Cluster_1", dataset="image_k4").closest[0].text.startswith("image view")
        assert store.get_cluster("Cluster_1", dataset="pool_b").closest[0].text.startswith("pool view")
    code, out, _ = run("import", *map(str, paths), "--db", str(db))
    assert code == 0 and "(12 unchanged, 0 replaced)" in out
    with Store(db) as store:
        assert "\n".join(store.conn.iterdump()) == dump
    code, out, _ = run("datasets", "--db", str(db))
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["dataset", "clusters", "proposals", "reviewed", "decisions"]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["caption_k4", "4", "0", "0", "0"], ["image_k4", "4", "0", "0", "0"], ["pool_b", "4", "0", "0", "0"]
    ]
    assert lines[1].endswith(str(paths[0]))


def test_propose_export_and_agreement_per_dataset_and_across_all(three: tuple[Path, list[Path]], tmp_path: Path) -> None:
    db, _ = three
    code, out, _ = run("propose", "--judge", "offline", "--db", str(db), "--dataset", "image_k4")
    assert code == 0 and out.startswith("proposed 4 of 4 clusters")
    code, out, _ = run("propose", "--judge", "offline", "--db", str(db))
    assert code == 0 and out.startswith("proposed 8 of 8 clusters")  # the other two datasets
    code, out, _ = run("propose", "--judge", "offline", "--db", str(db), "--dataset", "pool_b")
    assert out == "nothing to do: every cluster of dataset pool_b has a proposal from offline @ offline-v1\n"
    with Store(db) as store:
        for ds in ("caption_k4", "image_k4"):
            for i, verdict in enumerate((A, U, A, U)):
                proposal = store.proposals_for(f"Cluster_{i}", dataset=ds)[0]
                store.decide(f"Cluster_{i}", "ann", verdict, proposal_id=proposal.id, dataset=ds)
    out_all, out_one = tmp_path / "all.csv", tmp_path / "one.jsonl"
    code, out, _ = run("export", "--db", str(db), "--out", str(out_all))
    assert code == 0 and "wrote 8 rows" in out and "of 12 clusters left out" in out
    header, *body = out_all.read_text(encoding="utf-8").splitlines()
    assert header.startswith('"dataset","cluster_id"')
    assert [line.split(",")[:2] for line in body[:2]] == [['"caption_k4"', '"Cluster_0"'], ['"caption_k4"', '"Cluster_1"']]
    code, out, _ = run("export", "--db", str(db), "--out", str(out_one), "--dataset", "image_k4", "--include-unreviewed")
    rows = [json.loads(line) for line in out_one.read_text(encoding="utf-8").splitlines()]
    assert {r["dataset"] for r in rows} == {"image_k4"} and len(rows) == 4
    code, out, _ = run("agreement", "--db", str(db))
    assert code == 0 and out.startswith("reviewed clusters: 8\n")
    code, out, _ = run("agreement", "--db", str(db), "--dataset", "caption_k4", "--by-dataset")
    assert out.startswith("reviewed clusters: 4\n")
    assert "  caption_k4: offline @ offline-v1: 4 compared" in out and "  image_k4: offline @ offline-v1: 4 compared" in out
    code, out, _ = run("stats", "--db", str(db), "--dataset", "pool_b")
    assert "clusters:   4\n" in out and "decisions:  0 (0 clusters reviewed)" in out


def test_dataset_mistakes_are_one_line_and_change_nothing(three: tuple[Path, list[Path]], tmp_path: Path) -> None:
    db, paths = three
    with Store(db) as store:
        dump = "\n".join(store.conn.iterdump())
    assignments = tmp_path / "a.csv"
    assignments.write_text("uid,cluster_id\n" + "0" * 32 + ",Cluster_0\n", encoding="utf-8")
    known = "caption_k4, image_k4, pool_b"
    cases = [
        (("stats", "--dataset", "nope"), f"error: unknown dataset 'nope'; the database has: {known}\n"),
        (("export", "--out", str(tmp_path / "x.csv"), "--dataset", "nope"), f"error: unknown dataset 'nope'; the database has: {known}\n"),
        (("export-uids", "--assignments", str(assignments), "--out", str(tmp_path / "s.npy")),
         f"error: the database holds 3 datasets ({known}); choose one with --dataset\n"),
        (("import", str(paths[0]), "--dataset", ""), f"error: {paths[0]}: --dataset: dataset name is empty\n"),
        (("import", str(paths[0]), "--dataset", "x" * 101),
         f"error: {paths[0]}: --dataset: dataset name is 101 characters long (at most 100)\n"),
        (("import", str(paths[0]), "--dataset", "a/b"),
         f"error: {paths[0]}: --dataset: dataset name 'a/b' has '/': use only letters, digits, '-', '_' and '.'\n"),
    ]
    for args, message in cases:
        code, out, err = run(*args, "--db", str(db))
        assert (code, out, err) == (1, "", message), args
    with Store(db) as store:
        assert "\n".join(store.conn.iterdump()) == dump
    code, out, _ = run("export-uids", "--assignments", str(assignments), "--out", str(tmp_path / "s.npy"),
                       "--dataset", "pool_b", "--db", str(db))
    assert code == 0 and out.startswith("clusters: kept 0, dropped 1 (1 without a label)")
    # A record naming a bad dataset is refused with its place.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cluster_id": "x", "closest_samples": ["a"], "furthest_samples": ["b"], "dataset": "a b"}\n')
    code, _, err = run("import", str(bad), "--db", str(db))
    assert code == 1 and err.startswith(f"error: {bad}: line 1") and "dataset name 'a b'" in err


def test_same_id_twice_in_one_dataset_names_both_files(three: tuple[Path, list[Path]]) -> None:
    db, paths = three
    code, _, err = run("import", str(paths[0]), str(paths[1]), "--dataset", "one", "--db", str(db))
    assert code == 1 and str(paths[0]) in err and str(paths[1]) in err and "Cluster_0" in err


def test_store_calls_without_a_dataset_need_the_only_one(three: tuple[Path, list[Path]]) -> None:
    db, _ = three
    with Store(db) as store:
        with pytest.raises(DatasetError, match="caption_k4, image_k4, pool_b"):
            store.get_cluster("Cluster_0")
        assert store.count_clusters() == 12 and store.count_clusters("pool_b") == 4
        assert len(store.cluster_keys()) == 12


def test_replace_with_new_content_unlabels_and_asks_again(tmp_path: Path) -> None:
    """Decisions and proposals belong to the content they were made on."""
    db = tmp_path / "r.db"
    path = write_clusterings(tmp_path)[0]
    run("import", str(path), "--db", str(db))
    run("propose", "--judge", "offline", "--db", str(db))
    with Store(db) as store:
        old = store.proposals_for("Cluster_1")[0]
        store.decide("Cluster_1", "ann", A, proposal_id=old.id, note="looked fine")
        store.decide("Cluster_2", "ann", U)
        assert store.queue_count("bob", wanted=1) == 2
    data = json.loads(path.read_text(encoding="utf-8"))
    data["Cluster_1"]["closest_samples"] = ["DSC_0001.JPG", "DSC_0002.JPG"]
    path.write_text(json.dumps(data), encoding="utf-8")
    code, out, _ = run("import", str(path), "--db", str(db), "--replace")
    assert code == 0 and out.splitlines() == [
        "imported 0 clusters from 1 file into dataset caption_k4 (3 unchanged, 1 replaced)",
        "note: 1 reviewed cluster changed content and lost its label (the decisions stay in the log);"
        " they are back in the review queue and propose will ask again",
    ]
    with Store(db) as store:
        assert store.cluster_label("Cluster_1") is None and store.cluster_label("Cluster_2") is U
        assert [d.note for d in store.decisions("Cluster_1")] == ["looked fine"]  # still in the log
        assert store.proposals_for("Cluster_1") == []  # the old answer was about other content
        assert store.get_proposal(old.id) is not None
        assert store.next_cluster("ann") == "Cluster_0" and store.queue_count("ann") == 3  # 0, 3 and Cluster_1 again
        with pytest.raises(ValueError, match="earlier content"):
            store.decide("Cluster_1", "ann", A, proposal_id=old.id)
        rows = {r[1]: r for r in store.export_rows(include_unreviewed=True)}
        assert "Cluster_1" not in rows and rows["Cluster_2"][3] == "reviewed"  # no label, no current answer yet
        assert store.pending_cluster_ids("offline", "offline-v1") == ["Cluster_1"]
    code, out, _ = run("propose", "--judge", "offline", "--db", str(db))
    assert out.startswith("proposed 1 of 1 cluster (")
    with Store(db) as store:
        store.rebuild_labels()  # the log alone gives the same labels: old-content decisions do not count
        assert store.cluster_label("Cluster_1") is None and store.cluster_label("Cluster_2") is U


def test_fewshot_examples_from_several_datasets_and_evaluation_leaves_them_out(three: tuple[Path, list[Path]]) -> None:
    db, _ = three
    with Store(db) as store:
        from clusterqc.bootstrap import run_offline_judge

        run_offline_judge(store)
        for ds in ("caption_k4", "image_k4"):
            for i, verdict in enumerate((A, U, A, U)):
                store.decide(f"Cluster_{i}", "ann", verdict, note=f"{ds} note {i}", dataset=ds)
        fewshot.mark_example(store, "image_k4:Cluster_0", "varied real captions", "ann")
        row = fewshot.create_prompt(store, "mixed", ["caption_k4:Cluster_1", "image_k4:Cluster_0"])
        assert [(e["dataset"], e["cluster_id"]) for e in row["examples"]] == [
            ("caption_k4", "Cluster_1"), ("image_k4", "Cluster_0")
        ]
        keys = set(ev.evaluation_keys(store, [row]))
        assert ("caption_k4", "Cluster_1") not in keys and ("image_k4", "Cluster_0") not in keys
        assert ("image_k4", "Cluster_1") in keys and ("caption_k4", "Cluster_0") in keys  # same ids, other datasets
        assert set(ev.evaluation_keys(store, [row], dataset="image_k4")) == {("image_k4", f"Cluster_{i}") for i in (1, 2, 3)}
        result = ev.evaluate(store, ["mixed", "seed"], lambda t: __import__("clusterqc.propose").propose.make_judge("offline"),
                             dataset="caption_k4")
        assert sorted(result.cluster_ids) == ["caption_k4:Cluster_0", "caption_k4:Cluster_2", "caption_k4:Cluster_3"]
