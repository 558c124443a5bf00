"""The schema: sqlite-utils migrations, applied in order when a database is opened.

A migration never changes once released; a new column or index is a new function below.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

from clusterqc.store.m005_tables import (
    _M005_COPY,
    _M005_INDEXES,
    _M005_TABLES,
    DEFAULT_DATASET,  # noqa: F401  (re-exported: clusterqc.store and store.datasets import it from here)
    _content_hash,
    _upgraded_name,
)

migrations = Migrations("clusterqc")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """The first schema: clusters, prompts, proposals, failures, decisions, labels, holds.

    `clusters.closest` / `furthest` are the sample lists as JSON and the only copy of the
    captions: search reads them through json_each (see `_SEARCH`), since a second, joined copy
    for search made the database 45% bigger and imports 25% slower.
    """
    db.execute(
        """CREATE TABLE clusters (
            id TEXT PRIMARY KEY,
            nkey TEXT NOT NULL,
            dataset TEXT,
            closest TEXT NOT NULL,
            furthest TEXT NOT NULL,
            size INTEGER,
            source TEXT,
            content_hash TEXT NOT NULL,
            n_reviews INTEGER NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX clusters_queue ON clusters (n_reviews, nkey)")
    db.execute("CREATE INDEX clusters_nkey ON clusters (nkey)")
    db.execute("CREATE INDEX clusters_size ON clusters (size DESC, nkey)")
    db.execute(
        """CREATE TABLE prompts (
            version TEXT PRIMARY KEY,
            name TEXT UNIQUE,
            template TEXT NOT NULL,
            examples TEXT NOT NULL DEFAULT '[]',
            parent TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE proposals (
            id INTEGER PRIMARY KEY,
            cluster_id TEXT NOT NULL REFERENCES clusters(id),
            judge TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            verdict TEXT CHECK (verdict IN ('Acceptable', 'Unacceptable')),
            reason TEXT NOT NULL DEFAULT '',
            raw TEXT NOT NULL DEFAULT '',
            parse_error TEXT,
            latency_s REAL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            created_at TEXT NOT NULL,
            UNIQUE (cluster_id, judge, prompt_version)
        )"""
    )
    db.execute("CREATE INDEX proposals_judge ON proposals (judge, prompt_version)")
    db.execute(
        """CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            cluster_id TEXT NOT NULL REFERENCES clusters(id),
            judge TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            error TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            cluster_id TEXT NOT NULL REFERENCES clusters(id),
            reviewer TEXT NOT NULL CHECK (length(reviewer) > 0),
            verdict TEXT CHECK (verdict IN ('Acceptable', 'Unacceptable')),
            action TEXT NOT NULL CHECK (action IN ('decide', 'undo')),
            reverts INTEGER REFERENCES decisions(id),
            proposal_id INTEGER REFERENCES proposals(id),
            agrees INTEGER,
            note TEXT NOT NULL DEFAULT '',
            guideline TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX decisions_reviewer ON decisions (reviewer, id)")
    db.execute("CREATE INDEX decisions_cluster ON decisions (cluster_id, id)")
    db.execute("CREATE UNIQUE INDEX decisions_reverts ON decisions (reverts) WHERE reverts IS NOT NULL")
    # Append-only is enforced by the database itself, not only by convention.
    db.execute(
        """CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
           BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END"""
    )
    db.execute(
        """CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
           BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END"""
    )
    db.execute(
        """CREATE TABLE labels (
            cluster_id TEXT NOT NULL REFERENCES clusters(id),
            reviewer TEXT NOT NULL,
            verdict TEXT NOT NULL,
            decision_id INTEGER NOT NULL REFERENCES decisions(id),
            agrees INTEGER,
            note TEXT NOT NULL DEFAULT '',
            decided_at TEXT NOT NULL,
            PRIMARY KEY (cluster_id, reviewer)
        )"""
    )
    db.execute("CREATE INDEX labels_reviewer ON labels (reviewer)")
    db.execute(
        """CREATE TABLE holds (
            cluster_id TEXT PRIMARY KEY REFERENCES clusters(id),
            reviewer TEXT NOT NULL,
            expires_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migrations()
def m002_examples(db: sqlite_utils.Database) -> None:
    """Few-shot curation: the example pool, guideline texts, and the second-look queue.

    `examples` holds at most one example per cluster (re-marking edits it); the verdict is
    copied from the decision it was marked on, so a later undo does not silently change what a
    stored prompt version was built from. `guidelines` keeps every guideline text by hash so
    `decisions.guideline` can be resolved; `rechecks` is the queue of clusters whose decisions
    were made under older guidelines and want a second look.
    """
    db.execute(
        """CREATE TABLE examples (
            cluster_id TEXT PRIMARY KEY REFERENCES clusters(id),
            verdict TEXT NOT NULL CHECK (verdict IN ('Acceptable', 'Unacceptable')),
            reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
            decision_id INTEGER REFERENCES decisions(id),
            marked_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE guidelines (
            version TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE rechecks (
            cluster_id TEXT PRIMARY KEY REFERENCES clusters(id),
            why TEXT NOT NULL DEFAULT '',
            queued_at TEXT NOT NULL
        )"""
    )


@migrations()
def m003_review_queue_index(db: sqlite_utils.Database) -> None:
    """The Review queue sorted by size walks (n_reviews, size DESC, nkey) like it walks
    clusters_queue by id, so "largest first" stays an index lookup at 100,000 clusters."""
    db.execute("CREATE INDEX clusters_queue_size ON clusters (n_reviews, size DESC, nkey)")


@migrations()
def m004_browse_filter_indexes(db: sqlite_utils.Database) -> None:
    """Small partial indexes the browse filters start from (unparsed answers, disagreements),
    so those queues cost what they hold, not a walk over every cluster."""
    db.execute("CREATE INDEX proposals_unparsed ON proposals (cluster_id) WHERE verdict IS NULL")
    db.execute("CREATE INDEX labels_disagree ON labels (cluster_id) WHERE agrees = 0")



@migrations(transactional=False)
def m005_datasets(db: sqlite_utils.Database) -> None:
    """Datasets: a cluster is (dataset, cluster id), so several clusterings share one file.

    Every cluster-referencing table is rebuilt with a `dataset` column and a composite key
    (SQLite cannot change a primary key in place). Old clusters go in the dataset their
    `dataset` field named, else `default`. The content hash no longer covers the dataset (it
    is the namespace, not content) and is recomputed; proposals, decisions and labels record
    the hash of the content they were made on, so new content under an old id is reviewed anew.

    Not transactional in sqlite-utils' sense: foreign keys must be off for the rebuild and that
    pragma is ignored inside a transaction, so the function runs its own transaction. It is all
    or nothing; the `datasets` table existing means it already ran (a crash after our commit and
    before sqlite-utils records the migration then only records it).
    """
    conn = db.conn
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked under the write lock: a second process opening the same old file waits
            # here and then finds the work done.
            done = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'datasets'"
            if not conn.execute(done).fetchone():
                _m005_rebuild(conn)
            bad = conn.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise RuntimeError(f"m005_datasets: foreign key check failed: {[tuple(r) for r in bad[:5]]}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _m005_rebuild(conn: sqlite3.Connection) -> None:
    import json

    from clusterqc.store.connection import utcnow

    rows = conn.execute("SELECT id, dataset, closest, furthest, size, source, imported_at FROM clusters").fetchall()
    conn.execute("CREATE TEMP TABLE _m005_map (id TEXT PRIMARY KEY, dataset TEXT NOT NULL, content_hash TEXT NOT NULL)")
    conn.executemany(
        "INSERT INTO _m005_map VALUES (?, ?, ?)",
        [(r[0], _upgraded_name(r[1]), _content_hash(r[2], r[3], r[4])) for r in rows],
    )
    datasets: dict[str, tuple[str, set[str]]] = {}
    for r in rows:
        name = _upgraded_name(r[1])
        first, sources = datasets.get(name, (r[6], set()))
        datasets[name] = (min(first, r[6]), sources | ({r[5]} if r[5] else set()))
    for table, columns in _M005_TABLES.items():
        conn.execute(f"CREATE TABLE _new_{table} {columns}")
    conn.executemany(
        "INSERT INTO _new_datasets (name, created_at, sources) VALUES (?, ?, ?)",
        [(n, first or utcnow(), json.dumps(sorted(src))) for n, (first, src) in sorted(datasets.items())],
    )
    for table, select in _M005_COPY.items():
        conn.execute(f"INSERT INTO _new_{table} {select}")
    for table in _M005_COPY:
        conn.execute(f"DROP TABLE {table}")  # its indexes and triggers go with it
    for table in _M005_TABLES:
        conn.execute(f"ALTER TABLE _new_{table} RENAME TO {table}")
    for sql in _M005_INDEXES:
        conn.execute(sql)
    # Prompt versions name their examples by cluster id: add the dataset each one is now in.
    where = dict(conn.execute("SELECT id, dataset FROM _m005_map").fetchall())
    for version, examples in conn.execute("SELECT version, examples FROM prompts").fetchall():
        items = json.loads(examples)
        changed = [
            {**e, "dataset": where[e["cluster_id"]]} if isinstance(e, dict) and e.get("cluster_id") in where else e
            for e in items
        ]
        if changed != items:
            conn.execute("UPDATE prompts SET examples = ? WHERE version = ?",
                         (json.dumps(changed, ensure_ascii=False), version))
    conn.execute("DROP TABLE _m005_map")


@migrations()
def m006_review_skips(db: sqlite_utils.Database) -> None:
    """Skips per reviewer, so a new tab or a restart does not bring a skipped cluster back.

    One row per (reviewer, cluster): skipping again only refreshes the time; revisiting the
    skipped ones deletes the reviewer's rows; deciding a cluster deletes that reviewer's row.
    """
    db.execute(
        """CREATE TABLE review_skips (
            reviewer TEXT NOT NULL,
            dataset TEXT NOT NULL,
            cluster_id TEXT NOT NULL,
            skipped_at TEXT NOT NULL,
            PRIMARY KEY (reviewer, dataset, cluster_id),
            FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
        )"""
    )


@migrations()
def m007_learned_judge(db: sqlite_utils.Database) -> None:
    """The learned judge (issue 15): a proposal can carry how sure its judge is.

    `confidence` is the judge's probability for the verdict it proposes (0.5-1; NULL for judges
    that give none). The "least certain first" queue walks (judge, confidence) in order and
    checks each row is its cluster's newest learned proposal, one step of (dataset, cluster_id, judge, id).
    """
    db.execute("ALTER TABLE proposals ADD COLUMN confidence REAL")
    db.execute("CREATE INDEX proposals_cluster_judge ON proposals (dataset, cluster_id, judge, id)")
    db.execute("CREATE INDEX proposals_judge_confidence ON proposals (judge, confidence)")


@migrations()
def m008_cluster_evidence(db: sqlite_utils.Database) -> None:
    """Pool evidence (issue 14): a cluster's `stats` object from its file, as JSON (NULL when the
    file had none; a sample's `clip_score` stays inside the sample JSON), and the pool profile
    read from an assignments file: per cluster, how many of its samples the pool's CLIP-score
    cut (DataComp's top 30% baseline) keeps, so the sidebar can set verdicts beside that
    baseline with one SUM. The profile itself (size, quantiles, cut, file hash) is one JSON
    row in `settings` (key `pool_profile`)."""
    db.execute("ALTER TABLE clusters ADD COLUMN stats TEXT")
    db.execute(
        """CREATE TABLE pool_clusters (
            dataset TEXT NOT NULL,
            cluster_id TEXT NOT NULL,
            n_samples INTEGER NOT NULL,
            n_above_cut INTEGER NOT NULL,
            PRIMARY KEY (dataset, cluster_id)
        )"""
    )
