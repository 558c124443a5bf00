"""The fast import paths keep the store's promises: bulk index rebuild, records, search on JSON.

These paths exist for speed (bench/bench_import.py); each test here checks that they give the
same database as the plain path, and that a failure in the middle still writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from clusterqc.ingest import import_files, read_clusters, read_files
from clusterqc.model import Cluster, ClusterRecord, Sample, Verdict
from clusterqc.store import BULK_MIN_ROWS, Store, _cluster_row


def _indexes(store: Store) -> list[tuple[str, str]]:
    return store.conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'clusters' ORDER BY name"
    ).fetchall()


def _dump(store: Store) -> list[tuple]:
    return store.conn.execute(
        "SELECT id, nkey, dataset, closest, furthest, size, source, content_hash, n_reviews FROM clusters ORDER BY id"
    ).fetchall()


def _records(n: int, start: int = 0) -> list[ClusterRecord]:
    return [
        ClusterRecord(f"C_{i}", [f"cap {i} a", f"cap {i} b"], (Sample(f"far {i}", uid=f"u{i}"),), i % 7 or None)
        for i in range(start, start + n)
    ]


def test_bulk_import_rebuilds_every_index_and_matches_the_plain_path(tmp_path: Path) -> None:
    records = _records(BULK_MIN_ROWS + 5)
    with Store(tmp_path / "bulk.db") as bulk, Store(tmp_path / "plain.db") as plain:
        before = _indexes(bulk)
        assert bulk.import_clusters(records).added == len(records)  # empty table: bulk path
        for start in range(0, len(records), 1000):  # below the threshold: plain inserts
            plain.import_clusters(records[start : start + 1000])
        assert _indexes(bulk) == before, "every secondary index is back, with its own SQL"
        assert bulk.integrity_check() == "ok"
        assert _dump(bulk) == _dump(plain)
        plan = " ".join(r[3] for r in bulk.conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM clusters WHERE dataset = 'default' AND n_reviews = 0 ORDER BY nkey LIMIT 1"
        ))
        assert "clusters_queue" in plan, "the review queue is still an index walk"
        assert bulk.next_cluster("ann") == "C_0"


def test_failed_bulk_import_writes_nothing_and_keeps_indexes(tmp_path: Path) -> None:
    records = _records(BULK_MIN_ROWS)
    records.append(records[3])  # the same id twice: the primary key refuses it mid-insert
    with Store(tmp_path / "t.db") as store:
        store.import_clusters(_records(3, start=10**6))
        before, rows = _indexes(store), _dump(store)
        with pytest.raises(sqlite3.IntegrityError):
            store.import_clusters(records)
        assert _indexes(store) == before and _dump(store) == rows
        assert store.integrity_check() == "ok"


def test_record_rows_equal_cluster_rows() -> None:
    """A record keeps bare captions as str; the stored row and hash are those of its Cluster."""
    for record in [*_records(3), ClusterRecord("m", ["plain", Sample("x", url="http://e/1")], ["é \"q\" \\"])]:
        cluster = record.to_cluster()
        assert isinstance(cluster, Cluster) and all(isinstance(s, Sample) for s in cluster.samples)
        assert _cluster_row(record, "f", "t") == _cluster_row(cluster, "f", "t")
        assert _cluster_row(record, "f", "t")["content_hash"] == cluster.content_hash()


def test_reimport_of_records_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    data = {f"Cluster_{i}": {"closest_samples": [f"a{i}", "b"], "furthest_samples": ["c"], "size": i} for i in range(50)}
    path.write_text(json.dumps(data), encoding="utf-8")
    with Store(tmp_path / "t.db") as store:
        assert import_files(store, [path]).added == 50
        rows = _dump(store)
        again = import_files(store, [path])
        assert (again.added, again.unchanged, again.replaced) == (0, 50, 0) and _dump(store) == rows
        assert store.get_cluster("Cluster_7") == read_clusters(path)[7]
        assert [r.to_cluster() for _, rs in read_files([path]) for r in rs] == read_clusters(path)


@pytest.fixture
def searchable(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.db")
    store.import_clusters([
        Cluster("A", (Sample('a "quoted" Lighthouse'),), (Sample("back\\slash"),)),
        Cluster("B", (Sample("harbour", uid="lighthouse-uid", url="http://x/text"),), (Sample("tab\there"),)),
        Cluster("C", (Sample("100% sure_thing"),), (Sample("Ünïcödé café"),)),
    ])
    yield store
    store.close()


@pytest.mark.parametrize(
    ("search", "found"),
    [
        ("lighthouse", ["A"]),  # ASCII case-insensitive, and B's uid does not count
        ('"quoted"', ["A"]),  # JSON-escaped characters: no raw-JSON prefilter, exact match
        ("back\\slash", ["A"]),
        ("text", []),  # neither the JSON key "text" nor B's url
        ("uid", []),
        ('", "', []),  # the JSON separator between samples is not caption text
        ("harbour", ["B"]),
        ("100%", ["C"]),  # % and _ are literal
        ("100%_sure", []),  # as wildcards they would match "100% sure"
        ("sure_thing", ["C"]),
        ("café", ["C"]),
    ],
)
def test_search_reads_captions_from_the_json_columns(searchable: Store, search: str, found: list[str]) -> None:
    got = []
    while (cid := searchable.next_cluster("ann", filter="all", search=search, exclude=got)) is not None:
        got.append(cid)
    assert sorted(got) == found
    assert searchable.queue_count("bob", filter="all", search=search) == len(found)


def test_reviewed_clusters_text_is_every_caption_in_order(searchable: Store) -> None:
    searchable.decide("B", "ann", Verdict.ACCEPTABLE)
    (row,) = searchable.reviewed_clusters("B")
    assert row["text"] == "harbour\ntab\there"
