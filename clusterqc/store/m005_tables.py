"""m005_datasets' table definitions and upgrade helpers (kept apart so schema.py stays short).

What the tables look like after m005, how the old rows map into them, and the indexes rebuilt
with them; `schema.m005_datasets` runs them.
"""

from __future__ import annotations


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
