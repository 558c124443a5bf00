"""The store's promises, on real SQLite files: schema, identity, append-only decisions, undo, queue."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import ConflictError, Store, natural_key, resolve_db_path


def make_cluster(i: int, text: str = "a caption", size: int | None = None) -> Cluster:
    return Cluster(
        f"Cluster_{i}",
        tuple(Sample(f"{text} {i} close {j}") for j in range(5)),
        tuple(Sample(f"{text} {i} far {j}", uid=f"{i:016x}{j:016x}") for j in range(5)),
        size=size,
    )


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "t.db")
    s.import_clusters([make_cluster(i, size=100 - i) for i in range(12)], source="test")
    yield s
    s.close()


def test_pragmas_and_schema(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert store.schema_version()[0] == "m001_initial"
    assert store.integrity_check() == "ok"


def test_db_path_resolution(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CLUSTERQC_DB", raising=False)
    assert str(resolve_db_path(None)) == "clusterqc.db"
    monkeypatch.setenv("CLUSTERQC_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(None) == tmp_path / "env.db"
    assert str(resolve_db_path("flag.db")) == "flag.db"


def test_reopen_applies_no_migration_twice(tmp_path) -> None:
    first = Store(tmp_path / "a.db").schema_version()
    with Store(tmp_path / "a.db") as again:
        assert again.schema_version() == first
        assert len(set(first)) == len(first)


def test_reimport_is_idempotent_and_conflicts_need_replace(store: Store) -> None:
    again = store.import_clusters([make_cluster(i, size=100 - i) for i in range(12)])
    assert (again.added, again.unchanged, again.replaced) == (0, 12, 0)
    changed = [make_cluster(3, text="other"), make_cluster(99)]
    with pytest.raises(ConflictError) as err:
        store.import_clusters(changed)
    assert "Cluster_3" in str(err.value) and "--replace" in str(err.value)
    assert store.get_cluster("Cluster_99") is None, "a conflict must write nothing"
    result = store.import_clusters(changed, replace=True)
    assert (result.added, result.replaced) == (1, 1)
    assert store.get_cluster("Cluster_3").closest[0].text == "other 3 close 0"


def test_unicode_round_trip(tmp_path) -> None:
    texts = ["caf&eacute; &#039;x&#039;", "東京タワー", "שלום עולם", "🐈‍⬛ cat", "bad \ufffd byte", "nul\x00byte"]
    cluster = Cluster("u", tuple(Sample(t) for t in texts), (Sample("x", uid="a" * 32, url="http://x/y.jpg"),))
    with Store(tmp_path / "u.db") as s:
        s.import_clusters([cluster])
        assert s.get_cluster("u") == replace(cluster, dataset="default")  # no dataset named: `default`


def test_natural_order() -> None:
    ids = ["Cluster_10", "Cluster_2", "Cluster_1"]
    assert sorted(ids, key=natural_key) == ["Cluster_1", "Cluster_2", "Cluster_10"]


def test_proposal_identity(store: Store) -> None:
    p = Proposal("Cluster_1", "offline", "v1", Verdict.ACCEPTABLE, "fine")
    first = store.add_proposal(p)
    assert first is not None
    assert store.add_proposal(p) is None
    assert store.pending_cluster_ids("offline", "v1")[:2] == ["Cluster_0", "Cluster_2"]
    assert len(store.pending_cluster_ids("offline", "v1")) == 11
    assert len(store.pending_cluster_ids("offline", "v2")) == 12


def test_decisions_are_append_only(store: Store) -> None:
    store.decide("Cluster_0", "ann", Verdict.ACCEPTABLE)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("UPDATE decisions SET verdict = 'Unacceptable'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("DELETE FROM decisions")


def test_decide_records_agreement_and_label(store: Store) -> None:
    pid = store.add_proposal(Proposal("Cluster_0", "offline", "v1", Verdict.ACCEPTABLE, "fine"))
    d = store.decide("Cluster_0", "ann", Verdict.UNACCEPTABLE, proposal_id=pid, note="spam")
    assert d.agrees is False and d.action == "decide"
    assert store.cluster_label("Cluster_0") is Verdict.UNACCEPTABLE
    with pytest.raises(ValueError, match="not a proposal for cluster"):
        store.decide("Cluster_1", "ann", Verdict.ACCEPTABLE, proposal_id=pid)
    with pytest.raises(ValueError, match="reviewer"):
        store.decide("Cluster_1", " ", Verdict.ACCEPTABLE)
    assert len(store.decisions()) == 1, "failed decisions must write nothing"


def test_undo_appends_and_walks_back(store: Store) -> None:
    store.decide("Cluster_0", "ann", Verdict.ACCEPTABLE)
    store.decide("Cluster_0", "ann", Verdict.UNACCEPTABLE)
    store.decide("Cluster_1", "ann", Verdict.ACCEPTABLE)
    store.decide("Cluster_1", "bob", Verdict.UNACCEPTABLE)

    undo1 = store.undo_last("ann")
    assert (undo1.cluster_id, undo1.verdict, undo1.action) == ("Cluster_1", None, "undo")
    assert store.cluster_label("Cluster_1") is Verdict.UNACCEPTABLE, "bob's label stands"
    undo2 = store.undo_last("ann")
    assert (undo2.cluster_id, undo2.verdict) == ("Cluster_0", Verdict.ACCEPTABLE)
    assert store.cluster_label("Cluster_0") is Verdict.ACCEPTABLE
    store.undo_last("ann")
    assert store.cluster_label("Cluster_0") is None
    assert store.undo_last("ann") is None
    assert len(store.decisions()) == 7, "4 decisions + 3 undos, nothing rewritten"
    before = store.labels()
    store.rebuild_labels()
    assert store.labels() == before, "derived labels must equal what the log alone gives"
    assert store.progress("ann") == (1, 0, 12)


def test_queue_respects_reviews_wanted_and_holds(store: Store) -> None:
    first = store.next_cluster("ann")
    assert first == "Cluster_0"
    assert store.next_cluster("bob") == "Cluster_1", "a held cluster goes to nobody else"
    store.decide(first, "ann", Verdict.ACCEPTABLE)
    assert store.next_cluster("bob", wanted=2) == "Cluster_0", "a second review is wanted"
    assert store.next_cluster("ann", wanted=2) == "Cluster_1", "ann never gets what she decided"
    assert store.next_cluster("cat", hold_seconds=0) == "Cluster_2"
    assert store.next_cluster("dan") == "Cluster_2", "an expired hold frees the cluster"
    assert store.next_cluster("ann", sort="size", exclude=["Cluster_1"]) == "Cluster_3"
    assert store.next_cluster("zed", search="11 far") == "Cluster_11"
    assert store.next_cluster("zed", search="%") is None, "search text is literal, not a pattern"


def test_queue_filters(store: Store) -> None:
    pa = store.add_proposal(Proposal("Cluster_0", "j", "v", Verdict.ACCEPTABLE, "r"))
    store.add_proposal(Proposal("Cluster_1", "j", "v", Verdict.UNACCEPTABLE, "r"))
    store.add_proposal(Proposal("Cluster_2", "j", "v", None, "", raw="??", parse_error="no verdict"))
    assert store.next_cluster("ann", "model_acceptable") == "Cluster_0"
    assert store.next_cluster("ann", "model_unacceptable") == "Cluster_1"
    assert store.next_cluster("ann", "unparsed") == "Cluster_2"
    store.decide("Cluster_0", "ann", Verdict.UNACCEPTABLE, proposal_id=pa)
    assert store.queue_count("ann", "disagreements") == 1
    assert store.queue_count("ann", "mine") == 1
    assert store.queue_count("ann", "all") == 12
    assert store.next_cluster("ann", "all", sort="uncertainty") in {"Cluster_0", "Cluster_1", "Cluster_2"}
    with pytest.raises(ValueError, match="unknown filter"):
        store.queue_count("ann", "bogus")


def test_backup_is_a_consistent_copy(store: Store, tmp_path) -> None:
    store.decide("Cluster_0", "ann", Verdict.ACCEPTABLE)
    store.backup(tmp_path / "b.db")
    with Store(tmp_path / "b.db") as copy:
        assert copy.integrity_check() == "ok"
        assert len(copy.decisions()) == 1 and copy.count_clusters() == 12


def test_skips_per_reviewer_and_bulk_holds(tmp_path: Path) -> None:
    """m006: skips are per reviewer, leave every queue until revisited, and end with a decision."""
    from clusterqc.model import Cluster, Sample, Verdict

    with Store(tmp_path / "s.db") as store:
        store.import_clusters([Cluster(f"S_{i}", (Sample("a"),), (Sample("b"),)) for i in range(1, 6)])
        store.skip_cluster("ann", "S_1")
        store.skip_cluster("ann", "S_1")  # again: still one row
        assert store.skipped_clusters("ann") == ["S_1"] and store.skipped_clusters("ben") == []
        assert store.next_cluster("ann") == "S_2" and store.next_cluster("ben", hold_seconds=0) == "S_1"
        assert store.next_cluster("ann", "all") == "S_2"
        assert store.next_clusters("ann", 3) == ["S_2", "S_3", "S_4"]
        assert store.next_clusters("ben", 3) == ["S_1", "S_5"]  # ann holds the three she was given
        assert store.unskip("ann") == 1 and store.skipped_clusters("ann") == []
        store.skip_cluster("ann", "S_2")
        store.decide("S_2", "ann", Verdict.ACCEPTABLE)
        assert store.skipped_clusters("ann") == []
        with pytest.raises(ValueError):
            store.skip_cluster(" ", "S_3")
        assert store.clusters_needing(1) == 4
