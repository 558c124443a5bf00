"""Datasets across what the other branches added: review skips (m006), the learned judge and its
queue (m007), import-decisions, accept_proposal and the pool profile (m008). Two clusterings in
one real SQLite file share the ids C_1..C_N; nothing done in one may show in the other."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import DatasetError, Store

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


def clustering(word: str, n: int = 4) -> list[Cluster]:
    return [
        Cluster(f"C_{i}", tuple(Sample(f"{word} caption {k} of C_{i}") for k in range(3)), (Sample(f"{word} far {i}"),),
                size=10 + i)
        for i in range(1, n + 1)
    ]


@pytest.fixture
def two(tmp_path: Path) -> Path:
    db = tmp_path / "two.db"
    with Store(db) as store:
        store.import_clusters(clustering("alpha"), dataset="alpha")
        store.import_clusters(clustering("beta"), dataset="beta")
    return db


def test_new_tables_carry_the_dataset(two: Path) -> None:
    with Store(two) as store:
        assert store.schema_version()[4:] == [
            "m005_datasets", "m006_review_skips", "m007_learned_judge", "m008_cluster_evidence"
        ]
        for table in ("review_skips", "pool_clusters"):
            cols = [r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")]
            assert "dataset" in cols, (table, cols)
        index = [r[2] for r in store.conn.execute("PRAGMA index_info(proposals_cluster_judge)")]
        assert index == ["dataset", "cluster_id", "judge", "id"]


def test_a_skip_is_of_one_dataset(two: Path) -> None:
    with Store(two) as store:
        store.skip_cluster("ann", "C_1", dataset="alpha")
        assert store.skipped_clusters("ann", dataset="alpha") == ["C_1"]
        assert store.skipped_clusters("ann", dataset="beta") == []
        assert store.next_cluster("ann", dataset="alpha") == "C_2"
        assert store.next_cluster("ann", dataset="beta") == "C_1"  # same id, other clustering
        store.decide("C_1", "ann", A, dataset="beta")  # deciding beta's C_1 leaves alpha's skip
        assert store.skipped_clusters("ann", dataset="alpha") == ["C_1"]
        assert store.unskip("ann", dataset="beta") == 0
        assert store.unskip("ann", dataset="alpha") == 1
        with pytest.raises(DatasetError, match="alpha, beta"):
            store.skip_cluster("ann", "C_2")  # two datasets: None is ambiguous


def test_decide_many_and_import_decisions_go_to_the_named_dataset(two: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("cluster_id,label,note\nC_1,Unacceptable,bad\nC_2,Acceptable,\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(cli, ["import-decisions", str(labels), "--reviewer", "bob", "--db", str(two)])
    assert res.exit_code == 1 and "alpha, beta" in res.output and res.output.count("\n") == 1, res.output
    res = runner.invoke(cli, ["import-decisions", str(labels), "--reviewer", "bob", "--db", str(two),
                              "--dataset", "beta"])
    assert res.exit_code == 0, res.output
    assert "imported 2 decisions by 'bob' from" in res.output and "into dataset beta" in res.output
    with Store(two) as store:
        got = sorted((d.dataset, d.cluster_id, d.verdict) for d in store.decisions(reviewer="bob"))
        assert got == [("beta", "C_1", U), ("beta", "C_2", A)]
        assert store.labels(dataset="alpha") == []


def test_accept_proposal_decides_the_proposals_own_dataset(two: Path) -> None:
    with Store(two) as store:
        pid = store.add_proposal(Proposal("C_3", "gpt", "v1", U, "why", dataset="beta"))
        store.add_proposal(Proposal("C_3", "gpt", "v1", A, "why", dataset="alpha"))
        decision = store.accept_proposal("ann", pid)
        assert (decision.dataset, decision.cluster_id, decision.verdict, decision.agrees) == ("beta", "C_3", U, True)
        assert store.labels(dataset="alpha") == []


def _learned(store: Store, cid: str, dataset: str, verdict: Verdict, confidence: float) -> None:
    store.add_proposal(Proposal(cid, "learned", "lv1", verdict, "p", confidence=confidence, dataset=dataset))


def test_least_certain_first_and_learned_vs_llm_stay_in_their_dataset(two: Path) -> None:
    with Store(two) as store:
        _learned(store, "C_4", "alpha", A, 0.51)  # the least certain of all, but in alpha
        _learned(store, "C_2", "beta", A, 0.7)
        _learned(store, "C_3", "beta", U, 0.6)
        store.add_proposal(Proposal("C_2", "gpt", "v1", U, "llm", dataset="beta"))
        store.add_proposal(Proposal("C_4", "gpt", "v1", U, "llm", dataset="alpha"))
        assert store.peek_cluster("unreviewed", "least_certain", dataset="beta") == "C_3"
        assert store.peek_cluster("unreviewed", "least_certain", dataset="alpha") == "C_4"
        assert store.queue_count("ann", "learned_vs_llm", dataset="beta") == 1
        assert store.next_cluster("ann", "learned_vs_llm", dataset="beta") == "C_2"
        assert store.next_cluster("ann", "learned_vs_llm", dataset="alpha") == "C_4"


def test_learned_judge_trains_and_proposes_for_one_dataset(two: Path) -> None:
    from clusterqc.judges import learned

    with Store(two) as store:
        store.import_clusters(clustering("gamma", 30), dataset="gamma")
        for i in range(1, 31):
            store.decide(f"C_{i}", "ann", A if i % 2 else U, dataset="gamma")
        with pytest.raises(DatasetError, match="alpha, beta, gamma"):
            learned.train_and_propose(store)
        with pytest.raises(learned.NotEnoughLabels):
            learned.train_and_propose(store, dataset="alpha")  # gamma's labels are not alpha's
        run = learned.train_and_propose(store, dataset="gamma")
        assert run.proposed == 30
        judged = {(p.dataset, p.cluster_id) for p in store.proposals_for("C_1", dataset="gamma") if p.judge == "learned"}
        assert judged == {("gamma", "C_1")}
        for ds in ("alpha", "beta"):
            assert not [p for p in store.proposals_for("C_1", dataset=ds) if p.judge == "learned"]


def test_pool_profiles_are_per_dataset(two: Path) -> None:
    with Store(two) as store:
        store.save_pool_profile({"samples": 5}, [("C_1", 5, 2)], dataset="alpha")
        assert store.pool_cluster("C_1", dataset="alpha") == (5, 2)
        assert store.pool_cluster("C_1", dataset="beta") is None
        assert store.pool_profile(dataset="beta") is None
        store.decide("C_1", "ann", A, dataset="alpha")
        store.decide("C_1", "ann", A, dataset="beta")
        assert store.subset_so_far(dataset="alpha") == {"clusters": 1, "samples": 5, "above_cut": 2, "profiled": 1}
        assert store.subset_so_far(dataset="beta") == {"clusters": 1, "samples": 11, "above_cut": 0, "profiled": 0}
        store.save_pool_profile({"samples": 7}, [("C_2", 7, 1)], dataset="beta")
        assert store.pool_cluster("C_1", dataset="alpha") == (5, 2)  # beta's profile leaves alpha's alone


def test_end_of_run_errors_name_the_dataset_when_ids_repeat(tmp_path: Path, standin) -> None:
    """Both datasets' C_1 fail; in the end-of-run round alpha's fails again and beta's answers.
    The error list keeps alpha's C_1 (as `alpha:C_1`), not nothing because beta's C_1 answered."""
    from conftest import llm_judge
    from openai_standin import Reply

    from clusterqc.propose import run_batch

    with Store(tmp_path / "two.db") as store:
        store.import_clusters(clustering("alpha", 1), dataset="alpha")
        store.import_clusters(clustering("beta", 1), dataset="beta")
        asked = {"alpha": 0, "beta": 0}

        def handler(req):  # alpha always overloaded; beta overloaded the first time only
            word = "alpha" if "alpha caption" in req.prompt else "beta"
            asked[word] += 1
            if word == "alpha" or asked[word] == 1:
                return Reply(status=503, error_message=f"{word} overloaded")
            return None

        standin.handler = handler
        result = run_batch(store, llm_judge(standin, "sk-test-datasets-0123456789", max_retries=0), concurrency=1)
        assert asked == {"alpha": 2, "beta": 2}
        assert [cid for cid, _ in result.errors] == ["alpha:C_1"]
        assert result.progress.proposed == 1 and [p.dataset for p in store.proposals()] == ["beta"]
