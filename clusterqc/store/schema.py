"""The schema: sqlite-utils migrations, applied in order when a database is opened.

A migration never changes once released; a new column or index is a new function below.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

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



DEFAULT_DATASET = "default"  # where an upgraded database's clusters without a dataset go
_NAME_BAD = r"[^A-Za-z0-9._-]"


def _upgraded_name(value: str | None) -> str:
    """An old `clusters.dataset` value as a dataset name: characters a name may not hold become
    '-' (old ids were unique across the whole file, so two values meeting here cannot clash)."""
    import re

    name = re.sub(_NAME_BAD, "-", (value or "").strip())[:100].strip("-")
    return name or DEFAULT_DATASET


def _content_hash(closest: str, furthest: str, size: int | None) -> str:
    """What `Cluster.content_hash` gives for the stored sample lists (their JSON is kept verbatim)."""
    import hashlib

    payload = f'{{"closest": {closest}, "furthest": {furthest}, "size": {"null" if size is None else int(size)}}}'
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# The tables as m005 leaves them. A cluster is (dataset, id); everything that names a cluster
# names both. Proposals, decisions and labels carry the content hash they were made on.
_M005_TABLES = {
    "datasets": """(
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        sources TEXT NOT NULL DEFAULT '[]'
    )""",
    "clusters": """(
        dataset TEXT NOT NULL REFERENCES datasets(name),
        id TEXT NOT NULL,
        nkey TEXT NOT NULL,
        closest TEXT NOT NULL,
        furthest TEXT NOT NULL,
        size INTEGER,
        source TEXT,
        content_hash TEXT NOT NULL,
        n_reviews INTEGER NOT NULL DEFAULT 0,
        imported_at TEXT NOT NULL,
        PRIMARY KEY (dataset, id)
    )""",
    "proposals": """(
        id INTEGER PRIMARY KEY,
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
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
        UNIQUE (dataset, cluster_id, judge, prompt_version, content_hash),
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
    "failures": """(
        id INTEGER PRIMARY KEY,
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        judge TEXT NOT NULL,
        prompt_version TEXT NOT NULL,
        error TEXT NOT NULL,
        created_at TEXT NOT NULL,
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
    "decisions": """(
        id INTEGER PRIMARY KEY,
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        reviewer TEXT NOT NULL CHECK (length(reviewer) > 0),
        verdict TEXT CHECK (verdict IN ('Acceptable', 'Unacceptable')),
        action TEXT NOT NULL CHECK (action IN ('decide', 'undo')),
        reverts INTEGER REFERENCES decisions(id),
        proposal_id INTEGER REFERENCES proposals(id),
        agrees INTEGER,
        note TEXT NOT NULL DEFAULT '',
        guideline TEXT,
        created_at TEXT NOT NULL,
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
    "labels": """(
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        verdict TEXT NOT NULL,
        decision_id INTEGER NOT NULL REFERENCES decisions(id),
        agrees INTEGER,
        note TEXT NOT NULL DEFAULT '',
        decided_at TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        PRIMARY KEY (dataset, cluster_id, reviewer),
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
    "holds": """(
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (dataset, cluster_id),
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
    "examples": """(
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('Acceptable', 'Unacceptable')),
        reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
        decision_id INTEGER REFERENCES decisions(id),
        marked_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (dataset, cluster_id),
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
    "rechecks": """(
        dataset TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        why TEXT NOT NULL DEFAULT '',
        queued_at TEXT NOT NULL,
        PRIMARY KEY (dataset, cluster_id),
        FOREIGN KEY (dataset, cluster_id) REFERENCES clusters(dataset, id)
    )""",
}
# The old tables' rows in the new columns; `m` maps an old cluster id to its dataset and hash.
_M005_COPY = {
    "clusters": "SELECT m.dataset, o.id, o.nkey, o.closest, o.furthest, o.size, o.source, m.content_hash,"
    " o.n_reviews, o.imported_at FROM clusters o JOIN _m005_map m ON m.id = o.id",
    "proposals": "SELECT o.id, m.dataset, o.cluster_id, m.content_hash, o.judge, o.prompt_version, o.verdict,"
    " o.reason, o.raw, o.parse_error, o.latency_s, o.prompt_tokens, o.completion_tokens, o.created_at"
    " FROM proposals o JOIN _m005_map m ON m.id = o.cluster_id",
    "failures": "SELECT o.id, m.dataset, o.cluster_id, o.judge, o.prompt_version, o.error, o.created_at"
    " FROM failures o JOIN _m005_map m ON m.id = o.cluster_id",
    "decisions": "SELECT o.id, m.dataset, o.cluster_id, m.content_hash, o.reviewer, o.verdict, o.action,"
    " o.reverts, o.proposal_id, o.agrees, o.note, o.guideline, o.created_at"
    " FROM decisions o JOIN _m005_map m ON m.id = o.cluster_id",
    "labels": "SELECT m.dataset, o.cluster_id, o.reviewer, o.verdict, o.decision_id, o.agrees, o.note,"
    " o.decided_at, m.content_hash FROM labels o JOIN _m005_map m ON m.id = o.cluster_id",
    "holds": "SELECT m.dataset, o.cluster_id, o.reviewer, o.expires_at FROM holds o JOIN _m005_map m ON m.id = o.cluster_id",
    "examples": "SELECT m.dataset, o.cluster_id, o.verdict, o.reason, o.decision_id, o.marked_by, o.created_at"
    " FROM examples o JOIN _m005_map m ON m.id = o.cluster_id",
    "rechecks": "SELECT m.dataset, o.cluster_id, o.why, o.queued_at FROM rechecks o JOIN _m005_map m ON m.id = o.cluster_id",
}
_M005_INDEXES = (
    "CREATE INDEX clusters_queue ON clusters (dataset, n_reviews, nkey)",
    "CREATE INDEX clusters_nkey ON clusters (dataset, nkey)",
    "CREATE INDEX clusters_size ON clusters (dataset, size DESC, nkey)",
    "CREATE INDEX clusters_queue_size ON clusters (dataset, n_reviews, size DESC, nkey)",
    "CREATE INDEX proposals_judge ON proposals (judge, prompt_version)",
    "CREATE INDEX proposals_unparsed ON proposals (dataset, cluster_id) WHERE verdict IS NULL",
    "CREATE INDEX failures_cluster ON failures (dataset, cluster_id)",
    "CREATE INDEX decisions_reviewer ON decisions (reviewer, id)",
    "CREATE INDEX decisions_cluster ON decisions (dataset, cluster_id, id)",
    "CREATE UNIQUE INDEX decisions_reverts ON decisions (reverts) WHERE reverts IS NOT NULL",
    "CREATE INDEX labels_reviewer ON labels (reviewer, dataset)",
    "CREATE INDEX labels_disagree ON labels (dataset, cluster_id) WHERE agrees = 0",
    """CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
       BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END""",
    """CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
       BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END""",
)


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
