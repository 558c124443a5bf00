"""The SQLite store: schema, migrations and every query. The only module that speaks SQL.

Why it looks the way it does:
- WAL mode and a busy timeout let several reviewers and a batch runner share one file.
- Every write runs in `BEGIN IMMEDIATE`, so two writers never deadlock on a lock upgrade,
  and a write that still finds the database busy is retried a bounded number of times
  instead of surfacing "database is locked" to a reviewer.
- `decisions` is an append-only log. `labels` (each reviewer's current verdict per cluster)
  and `clusters.n_reviews` are derived from it inside the same transaction as each append, so
  the review queue stays an index lookup at 100,000 clusters; `rebuild_labels` recomputes them
  from the log alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from clusterqc.model import Cluster, ClusterRecord, Decision, Proposal, Sample, Stats, Verdict

DEFAULT_DB = "clusterqc.db"
ENV_DB = "CLUSTERQC_DB"
BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 8
HOLD_SECONDS = 300
IMPORT_CACHE_KIB = -512_000  # negative: KiB, so at most 500 MiB of page cache while importing
PAGE_SIZE = 16_384  # bytes, for new database files
BULK_MIN_ROWS = 10_000  # an import at least this big (and >= the table) rebuilds indexes once
MAX_PEEK_WANTED = 3  # peek_cluster: "needs review" means fewer than this many reviews

migrations = Migrations("clusterqc")


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """`--db`, else $CLUSTERQC_DB, else ./clusterqc.db: the order every entry point uses."""
    return Path(db or os.environ.get(ENV_DB) or DEFAULT_DB)


def utcnow() -> str:
    """ISO-8601 UTC with microseconds: sorts as text and keeps decisions in order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def natural_key(cluster_id: str) -> str:
    """`Cluster_2` before `Cluster_10`: numbers zero-padded so text order is natural order."""
    return _DIGITS.sub(_zero_pad, cluster_id)


_DIGITS = re.compile(r"\d+")


def _zero_pad(match: re.Match[str]) -> str:
    return match.group().zfill(12)


class ConflictError(ValueError):
    """Clusters whose id exists with other content; nothing was written."""

    def __init__(self, ids: Sequence[str]):
        self.ids = list(ids)
        shown = ", ".join(self.ids[:5]) + (f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else "")
        super().__init__(
            f"{len(self.ids)} cluster id(s) already exist with different content: {shown} "
            "(use --replace to overwrite them)"
        )


@dataclass(frozen=True)
class ImportResult:
    added: int
    unchanged: int
    replaced: int


# --------------------------------------------------------------------------- schema


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


# --------------------------------------------------------------------------- store


def _cluster_from_row(row: sqlite3.Row | dict[str, Any]) -> Cluster:
    return Cluster(
        id=row["id"],
        closest=tuple(Sample.from_json(s) for s in json.loads(row["closest"])),
        furthest=tuple(Sample.from_json(s) for s in json.loads(row["furthest"])),
        size=row["size"],
        dataset=row["dataset"],
    )


def _proposal_from_row(row: sqlite3.Row) -> Proposal:
    return Proposal(
        cluster_id=row["cluster_id"],
        judge=row["judge"],
        prompt_version=row["prompt_version"],
        verdict=Verdict.parse(row["verdict"]),
        reason=row["reason"],
        raw=row["raw"],
        parse_error=row["parse_error"],
        latency_s=row["latency_s"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        id=row["id"],
        created_at=row["created_at"],
    )


def _decision_from_row(row: sqlite3.Row) -> Decision:
    return Decision(
        cluster_id=row["cluster_id"],
        reviewer=row["reviewer"],
        verdict=Verdict.parse(row["verdict"]),
        action=row["action"],
        proposal_id=row["proposal_id"],
        agrees=None if row["agrees"] is None else bool(row["agrees"]),
        note=row["note"],
        reverts=row["reverts"],
        guideline=row["guideline"],
        id=row["id"],
        created_at=row["created_at"],
    )


# One encoder for every row: json.dumps builds a new one per call, which dominated imports.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for a str
_text = attrgetter("text")
_STR = repeat(str)  # map(isinstance, items, _STR): a type check per item at C speed

# The columns an import writes, in the order `_cluster_values` gives them.
_ROW_COLUMNS = ("id", "nkey", "dataset", "closest", "furthest", "size", "source", "content_hash", "imported_at")
_HASH_AT = _ROW_COLUMNS.index("content_hash")


def _samples_json(samples: Sequence[str | Sample]) -> str:
    """Same text as json.dumps([s.to_json() ...], ensure_ascii=False), 10x cheaper.

    Bare captions (the luvdatacomp case; an importer's `ClusterRecord` keeps them as plain
    strings) are quoted with the json module's own C string encoder and joined with its default
    separator; anything else goes through the full encoder.
    """
    if all(map(isinstance, samples, _STR)):
        return "[" + ", ".join(map(_quote, samples)) + "]"
    if any(map(isinstance, samples, _STR)):  # a record mixing bare captions and Samples
        samples = [s if isinstance(s, Sample) else Sample(s) for s in samples]
    if all(s.uid is None and s.url is None for s in samples):
        return "[" + ", ".join(map(_quote, map(_text, samples))) + "]"
    return _ENCODE([s.to_json() for s in samples])


def _cluster_values(cluster: Cluster | ClusterRecord, source: str | None, now: str) -> tuple[Any, ...]:
    """One import row in `_ROW_COLUMNS` order: a tuple binds faster than a dict of names."""
    closest = _samples_json(cluster.closest)
    furthest = _samples_json(cluster.furthest)
    # Byte for byte the payload Cluster.content_hash() hashes (sort_keys order: closest, dataset,
    # furthest, size; sample keys text/uid/url are already sorted), built from the two strings
    # above instead of encoding every sample a second time. tests/test_ingest.py checks equality.
    payload = (
        f'{{"closest": {closest}, "dataset": {"null" if cluster.dataset is None else _quote(cluster.dataset)}, '
        f'"furthest": {furthest}, "size": {"null" if cluster.size is None else int(cluster.size)}}}'
    )
    return (
        cluster.id,
        natural_key(cluster.id),
        cluster.dataset,
        closest,
        furthest,
        cluster.size,
        source,
        hashlib.sha256(payload.encode("utf-8")).hexdigest(),
        now,
    )


def _cluster_row(cluster: Cluster | ClusterRecord, source: str | None, now: str) -> dict[str, Any]:
    """The row an import writes, by column name."""
    return dict(zip(_ROW_COLUMNS, _cluster_values(cluster, source, now)))


# Every caption of cluster `c` as rows of `t`, closest first (a stored sample is a JSON string,
# or an object with "text" when it has a uid or url). Search and few-shot read captions here:
# the JSON columns are their only copy.
_SAMPLE_TEXTS = " UNION ALL ".join(
    f"SELECT CASE j.type WHEN 'text' THEN j.value ELSE j.value ->> '$.text' END AS t FROM json_each(c.{col}) j"
    for col in ("closest", "furthest")
)
# All captions of `c`, one per line (json_each walks each array in order; closest first).
CLUSTER_TEXT_SQL = f"(SELECT group_concat(t, char(10)) FROM ({_SAMPLE_TEXTS}))"
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # what json.dumps(ensure_ascii=False) escapes


def _search_sql(search: str) -> str:
    """WHERE fragment: some caption of `c` contains :search (a LIKE pattern, so ASCII case-insensitive).

    The exact test walks the samples with json_each; before it, a plain LIKE over the raw JSON
    columns throws out most clusters at text-scan speed. That prefilter never drops a match when
    the search holds nothing JSON escapes (a caption's match then appears verbatim in the JSON);
    otherwise it is left out.
    """
    exact = f" AND EXISTS (SELECT 1 FROM ({_SAMPLE_TEXTS}) WHERE t LIKE :search ESCAPE '\\')"
    if _JSON_ESCAPED.search(search):
        return exact
    return " AND (c.closest LIKE :search ESCAPE '\\' OR c.furthest LIKE :search ESCAPE '\\')" + exact


# The queue filters the Review page offers. Each maps to a WHERE fragment over `clusters c`;
# ":me" is the reviewer. "Needs review" ones also respect reviews-wanted and holds.
_NEEDS_ME = (
    "NOT EXISTS (SELECT 1 FROM labels l WHERE l.cluster_id = c.id AND l.reviewer = :me)"
    " AND c.n_reviews + (SELECT count(*) FROM holds h WHERE h.cluster_id = c.id"
    " AND h.reviewer != :me AND h.expires_at > :now) < :wanted"
)
QUEUE_FILTERS: dict[str, str] = {
    "unreviewed": _NEEDS_ME,
    "model_acceptable": _NEEDS_ME
    + " AND EXISTS (SELECT 1 FROM proposals p WHERE p.cluster_id = c.id AND p.verdict = 'Acceptable')",
    "model_unacceptable": _NEEDS_ME
    + " AND EXISTS (SELECT 1 FROM proposals p WHERE p.cluster_id = c.id AND p.verdict = 'Unacceptable')",
    # The three below start from the (usually few) rows they are about, through an index,
    # instead of testing every cluster: at 100,000 clusters that is ~0.1 ms against ~35-130 ms.
    "unparsed": _NEEDS_ME + " AND c.id IN (SELECT p.cluster_id FROM proposals p WHERE p.verdict IS NULL)",
    "disagreements": "c.id IN (SELECT l.cluster_id FROM labels l WHERE l.agrees = 0)",
    "mine": "c.id IN (SELECT l.cluster_id FROM labels l WHERE l.reviewer = :me)",
    "all": "1",
}
# Few-shot curation: clusters queued for a second look (guidelines changed), not decided since.
RECHECK_FILTER = (
    "EXISTS (SELECT 1 FROM rechecks r WHERE r.cluster_id = c.id AND NOT EXISTS"
    " (SELECT 1 FROM decisions d WHERE d.cluster_id = c.id AND d.action = 'decide'"
    " AND d.created_at > r.queued_at))"
)
QUEUE_FILTERS["recheck"] = RECHECK_FILTER
_UNCERTAINTY = (
    "((SELECT count(DISTINCT p.verdict) FROM proposals p WHERE p.cluster_id = c.id)"
    " + (SELECT count(*) > 0 FROM proposals p WHERE p.cluster_id = c.id AND p.verdict IS NULL))"
)
QUEUE_SORTS: dict[str, str] = {
    "id": "c.nkey",
    "size": "c.size DESC, c.nkey",  # SQLite sorts NULL lowest: unknown sizes come last
    "uncertainty": f"{_UNCERTAINTY} DESC, c.nkey",
}


class Store:
    """One SQLite database file. Cheap to open; open one per process, thread or session."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = resolve_db_path(path)
        self.conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # Only takes effect when this creates the file (before WAL is on); an existing database
        # keeps its page size. 16 KiB pages halve the pages an import writes (rows are ~0.8 KiB).
        self.conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        self._retry(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
        self.db = sqlite_utils.Database(self.conn)
        self._retry(lambda: migrations.apply(self.db))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- plumbing

    @staticmethod
    def _retry(fn: Any) -> Any:
        """Run `fn`, retrying a bounded number of times if SQLite still reports a lock."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        return None  # pragma: no cover

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE (the write lock up front)."""
        self._retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _write(self, fn: Any) -> Any:
        """Run `fn(conn)` in one write transaction; the whole transaction is retried if busy."""

        def attempt() -> Any:
            with self._tx() as conn:
                return fn(conn)

        return self._retry(attempt)

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def integrity_check(self) -> str:
        return self._one("PRAGMA integrity_check")[0]

    def schema_version(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    # ----------------------------------------------------------------- clusters

    def import_clusters(
        self,
        clusters: Iterable[Cluster | ClusterRecord],
        source: str | None = None,
        replace: bool = False,
        sources: dict[str, str] | None = None,
    ) -> ImportResult:
        """Write clusters all or nothing: identical ones are skipped, changed ones need `replace`.

        `sources` (cluster id -> file) lets one all-or-nothing call record each cluster's own file
        when several files are imported together; `source` is the fallback.
        """
        now = utcnow()
        rows = [_cluster_values(c, sources.get(c.id, source) if sources else source, now) for c in clusters]
        if not rows:
            return ImportResult(0, 0, 0)

        def write(conn: sqlite3.Connection) -> ImportResult:
            before = conn.execute("SELECT count(*) FROM clusters").fetchone()[0]
            existing = self._existing_hashes(conn, [r[0] for r in rows]) if before else {}
            new = [r for r in rows if r[0] not in existing]
            changed = [r for r in rows if r[0] in existing and existing[r[0]] != r[_HASH_AT]]
            if changed and not replace:
                raise ConflictError([r[0] for r in changed])
            # A big page cache for this transaction: the B-tree inserts of 100,000 rows otherwise
            # spill and re-read pages (3x slower). Restored below; per connection only.
            cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size = {IMPORT_CACHE_KIB}")
            try:
                self._insert_clusters(conn, new, bulk=len(new) >= max(BULK_MIN_ROWS, before))
                update_cols = _ROW_COLUMNS[1:]
                conn.executemany(
                    f"UPDATE clusters SET {', '.join(f'{k} = ?' for k in update_cols)} WHERE id = ?",
                    [r[1:] + r[:1] for r in changed],
                )
            finally:
                conn.execute(f"PRAGMA cache_size = {int(cache)}")
            return ImportResult(len(new), len(rows) - len(new) - len(changed), len(changed))

        return self._write(write)

    @staticmethod
    def _insert_clusters(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], bulk: bool) -> None:
        """Insert rows in `_ROW_COLUMNS` order; a bulk load builds the secondary indexes once after.

        Building an index by sorting all keys once costs a fraction of 100,000 random B-tree
        inserts into each of the five (bench/RESULTS.md). Indexes are dropped and re-created
        from their own SQL inside the caller's transaction, so whichever migration added them,
        they are all back on commit, and a failed import rolls back to them untouched. Small
        imports into a big table insert normally (re-sorting it all would cost more).
        """
        indexes = (
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'clusters'"
                " AND sql IS NOT NULL ORDER BY name"
            ).fetchall()
            if bulk
            else []
        )
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.executemany(
            f"INSERT INTO clusters ({', '.join(_ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in _ROW_COLUMNS)})",
            rows,
        )
        for _, sql in indexes:
            conn.execute(sql)

    @staticmethod
    def _existing_hashes(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), 50_000):
            chunk = json.dumps(ids[start : start + 50_000])
            for row in conn.execute(
                "SELECT id, content_hash FROM clusters WHERE id IN (SELECT value FROM json_each(?))",
                (chunk,),
            ):
                found[row[0]] = row[1]
        return found

    def get_cluster(self, cluster_id: str) -> Cluster | None:
        row = self._one("SELECT * FROM clusters WHERE id = ?", (cluster_id,))
        return _cluster_from_row(row) if row else None

    def cluster_ids(self) -> list[str]:
        return [r[0] for r in self._all("SELECT id FROM clusters ORDER BY nkey")]

    def iter_clusters(self, ids: Iterable[str] | None = None) -> Iterator[Cluster]:
        """Clusters in natural id order, all of them or the given ids."""
        if ids is None:
            rows = self.conn.execute("SELECT * FROM clusters ORDER BY nkey")
        else:
            rows = self.conn.execute(
                "SELECT * FROM clusters WHERE id IN (SELECT value FROM json_each(?)) ORDER BY nkey",
                (json.dumps(list(ids)),),
            )
        for row in rows:
            yield _cluster_from_row(row)

    def count_clusters(self) -> int:
        return self._one("SELECT count(*) FROM clusters")[0]

    def cluster_info(self, cluster_id: str) -> dict[str, Any] | None:
        """Provenance the Review page shows: source file, import time, review count."""
        row = self._one(
            "SELECT id, dataset, size, source, imported_at, n_reviews FROM clusters WHERE id = ?",
            (cluster_id,),
        )
        return dict(row) if row else None

    # ----------------------------------------------------------------- prompts

    def save_prompt(
        self,
        version: str,
        template: str,
        name: str | None = None,
        examples: list[dict[str, Any]] | None = None,
        parent: str | None = None,
    ) -> str:
        """Store a prompt version (identity: its content hash); saving it again changes nothing."""

        def write(conn: sqlite3.Connection) -> str:
            if name is not None:
                taken = conn.execute(
                    "SELECT version FROM prompts WHERE name = ? AND version != ?", (name, version)
                ).fetchone()
                if taken:
                    raise ValueError(f"prompt name {name!r} is already used by version {taken[0]}")
            conn.execute(
                "INSERT OR IGNORE INTO prompts (version, name, template, examples, parent, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (version, name, template, json.dumps(examples or [], ensure_ascii=False), parent, utcnow()),
            )
            return version

        return self._write(write)

    def get_prompt(self, version_or_name: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT * FROM prompts WHERE version = ? OR name = ? ORDER BY version = ? DESC LIMIT 1",
            (version_or_name, version_or_name, version_or_name),
        )
        if row is None:
            return None
        out = dict(row)
        out["examples"] = json.loads(out["examples"])
        return out

    def prompts(self) -> list[dict[str, Any]]:
        out = []
        for row in self._all("SELECT * FROM prompts ORDER BY created_at"):
            item = dict(row)
            item["examples"] = json.loads(item["examples"])
            out.append(item)
        return out

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # ----------------------------------------------------------------- proposals

    def add_proposal(self, proposal: Proposal) -> int | None:
        """Store one judge answer; returns its id, or None if (cluster, judge, prompt) had one."""
        return self._write(lambda conn: self._insert_proposal(conn, proposal))

    def add_proposals(self, proposals: Iterable[Proposal]) -> int:
        """Store many answers in one transaction (imports); returns how many were new."""
        items = list(proposals)
        return self._write(lambda conn: sum(self._insert_proposal(conn, p) is not None for p in items))

    @staticmethod
    def _insert_proposal(conn: sqlite3.Connection, p: Proposal) -> int | None:
        cur = conn.execute(
            "INSERT OR IGNORE INTO proposals (cluster_id, judge, prompt_version, verdict, reason, raw,"
            " parse_error, latency_s, prompt_tokens, completion_tokens, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.cluster_id,
                p.judge,
                p.prompt_version,
                p.verdict.value if p.verdict else None,
                p.reason,
                p.raw,
                p.parse_error,
                p.latency_s,
                p.prompt_tokens,
                p.completion_tokens,
                p.created_at or utcnow(),
            ),
        )
        return cur.lastrowid if cur.rowcount else None

    def add_failure(self, cluster_id: str, judge: str, prompt_version: str, error: str) -> None:
        """A request that returned no answer: logged, and retried by the next run."""
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO failures (cluster_id, judge, prompt_version, error, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (cluster_id, judge, prompt_version, error, utcnow()),
            )
        )

    def failures(self, judge: str | None = None, prompt_version: str | None = None) -> list[dict[str, Any]]:
        """Failures not since answered, newest first."""
        return [
            dict(r)
            for r in self._all(
                "SELECT f.* FROM failures f WHERE (:judge IS NULL OR f.judge = :judge)"
                " AND (:pv IS NULL OR f.prompt_version = :pv)"
                " AND NOT EXISTS (SELECT 1 FROM proposals p WHERE p.cluster_id = f.cluster_id"
                " AND p.judge = f.judge AND p.prompt_version = f.prompt_version)"
                " ORDER BY f.id DESC",
                {"judge": judge, "pv": prompt_version},
            )
        ]

    def pending_cluster_ids(
        self, judge: str, prompt_version: str, limit: int | None = None, ids: Iterable[str] | None = None
    ) -> list[str]:
        """Clusters with no answer yet from this judge and prompt version (what a run will ask)."""
        sql = (
            "SELECT c.id FROM clusters c WHERE NOT EXISTS (SELECT 1 FROM proposals p"
            " WHERE p.cluster_id = c.id AND p.judge = ? AND p.prompt_version = ?)"
        )
        params: list[Any] = [judge, prompt_version]
        if ids is not None:
            sql += " AND c.id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(list(ids)))
        sql += " ORDER BY c.nkey"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [r[0] for r in self._all(sql, params)]

    def proposals_for(self, cluster_id: str) -> list[Proposal]:
        rows = self._all("SELECT * FROM proposals WHERE cluster_id = ? ORDER BY id", (cluster_id,))
        return [_proposal_from_row(r) for r in rows]

    def get_proposal(self, proposal_id: int) -> Proposal | None:
        row = self._one("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
        return _proposal_from_row(row) if row else None

    def proposals(self, judge: str | None = None, prompt_version: str | None = None) -> list[Proposal]:
        rows = self._all(
            "SELECT * FROM proposals WHERE (:j IS NULL OR judge = :j) AND (:pv IS NULL OR prompt_version = :pv)"
            " ORDER BY id",
            {"j": judge, "pv": prompt_version},
        )
        return [_proposal_from_row(r) for r in rows]

    def judges(self) -> list[tuple[str, str, int]]:
        """(judge, prompt version, proposals) for every judge that has answered."""
        return [
            (r[0], r[1], r[2])
            for r in self._all(
                "SELECT judge, prompt_version, count(*) FROM proposals GROUP BY judge, prompt_version"
                " ORDER BY min(id)"
            )
        ]

    # ----------------------------------------------------------------- decisions

    def decide(
        self,
        cluster_id: str,
        reviewer: str,
        verdict: Verdict,
        proposal_id: int | None = None,
        note: str = "",
        guideline: str | None = None,
    ) -> Decision:
        """Append a reviewer's verdict and update the derived labels, in one transaction."""
        if not reviewer or not reviewer.strip():
            raise ValueError("a decision needs a reviewer name")
        verdict = Verdict(verdict)

        def write(conn: sqlite3.Connection) -> Decision:
            agrees = self._agrees(conn, cluster_id, proposal_id, verdict)
            row = {
                "cluster_id": cluster_id,
                "reviewer": reviewer.strip(),
                "verdict": verdict.value,
                "action": "decide",
                "reverts": None,
                "proposal_id": proposal_id,
                "agrees": agrees,
                "note": note or "",
                # Unless the caller says otherwise, a decision is made under the current guideline
                # (few-shot curation: lets later guideline changes queue it for a second look).
                "guideline": guideline if guideline is not None else self._current_guideline(conn),
                "created_at": utcnow(),
            }
            row["id"] = self._append_decision(conn, row)
            self._set_label(conn, row)
            conn.execute(
                "DELETE FROM holds WHERE cluster_id = ? AND reviewer = ?", (cluster_id, row["reviewer"])
            )
            return Decision(**{**row, "verdict": verdict, "agrees": None if agrees is None else bool(agrees)})

        return self._write(write)

    @staticmethod
    def _agrees(
        conn: sqlite3.Connection, cluster_id: str, proposal_id: int | None, verdict: Verdict
    ) -> int | None:
        if proposal_id is None:
            return None
        prow = conn.execute(
            "SELECT cluster_id, verdict FROM proposals WHERE id = ?", (proposal_id,)
        ).fetchone()
        if prow is None or prow["cluster_id"] != cluster_id:
            raise ValueError(f"proposal {proposal_id} is not a proposal for cluster {cluster_id}")
        return None if prow["verdict"] is None else int(prow["verdict"] == verdict.value)

    @staticmethod
    def _append_decision(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
        cols = [k for k in row if k != "id"]
        cur = conn.execute(
            f"INSERT INTO decisions ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [row[k] for k in cols],
        )
        return int(cur.lastrowid)

    @staticmethod
    def _set_label(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
        """Make `row` the reviewer's current label (or clear it), keeping n_reviews in step."""
        cluster_id, reviewer = row["cluster_id"], row["reviewer"]
        had = conn.execute(
            "SELECT 1 FROM labels WHERE cluster_id = ? AND reviewer = ?", (cluster_id, reviewer)
        ).fetchone()
        if row["verdict"] is None:
            conn.execute("DELETE FROM labels WHERE cluster_id = ? AND reviewer = ?", (cluster_id, reviewer))
        else:
            conn.execute(
                "INSERT INTO labels (cluster_id, reviewer, verdict, decision_id, agrees, note, decided_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cluster_id, reviewer) DO UPDATE SET"
                " verdict = excluded.verdict, decision_id = excluded.decision_id, agrees = excluded.agrees,"
                " note = excluded.note, decided_at = excluded.decided_at",
                (cluster_id, reviewer, row["verdict"], row["id"], row["agrees"], row["note"], row["created_at"]),
            )
        delta = (row["verdict"] is not None) - (had is not None)
        if delta:
            conn.execute("UPDATE clusters SET n_reviews = n_reviews + ? WHERE id = ?", (delta, cluster_id))

    def undo_last(self, reviewer: str) -> Decision | None:
        """Revert the reviewer's latest decision that is not yet reverted, by appending an undo.

        The undo row carries what the reviewer's label was before that decision (None if none),
        so the log alone tells the whole story. Undoing again walks further back.
        """

        def write(conn: sqlite3.Connection) -> Decision | None:
            target = conn.execute(
                "SELECT * FROM decisions d WHERE d.reviewer = ? AND d.action = 'decide'"
                " AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.reverts = d.id)"
                " ORDER BY d.id DESC LIMIT 1",
                (reviewer,),
            ).fetchone()
            if target is None:
                return None
            before = self._label_before(conn, target)
            row = {
                "cluster_id": target["cluster_id"],
                "reviewer": reviewer,
                "verdict": before["verdict"] if before else None,
                "action": "undo",
                "reverts": target["id"],
                "proposal_id": before["proposal_id"] if before else None,
                "agrees": before["agrees"] if before else None,
                "note": before["note"] if before else "",
                "guideline": before["guideline"] if before else None,
                "created_at": utcnow(),
            }
            row["id"] = self._append_decision(conn, row)
            self._set_label(conn, row)
            return _decision_from_row(conn.execute("SELECT * FROM decisions WHERE id = ?", (row["id"],)).fetchone())

        return self._write(write)

    @staticmethod
    def _label_before(conn: sqlite3.Connection, target: sqlite3.Row) -> sqlite3.Row | None:
        """The reviewer's effective row for the cluster just before `target` was appended."""
        return conn.execute(
            "SELECT * FROM decisions WHERE cluster_id = ? AND reviewer = ? AND id < ?"
            " ORDER BY id DESC LIMIT 1",
            (target["cluster_id"], target["reviewer"], target["id"]),
        ).fetchone()

    def decisions(self, cluster_id: str | None = None, reviewer: str | None = None) -> list[Decision]:
        # Only the given conditions go into the SQL: `(:c IS NULL OR cluster_id = :c)` would keep
        # SQLite from using the cluster/reviewer indexes (a full scan per Review page render).
        conds = [sql for sql, value in (("cluster_id = :c", cluster_id), ("reviewer = :r", reviewer)) if value is not None]
        rows = self._all(
            "SELECT * FROM decisions" + (" WHERE " + " AND ".join(conds) if conds else "") + " ORDER BY id",
            {"c": cluster_id, "r": reviewer},
        )
        return [_decision_from_row(r) for r in rows]

    def labels(self, cluster_id: str | None = None) -> list[dict[str, Any]]:
        """Every reviewer's current label: cluster_id, reviewer, verdict, agrees, note, decided_at."""
        return [
            dict(r)
            for r in self._all(
                "SELECT l.*, d.proposal_id, d.guideline FROM labels l JOIN decisions d ON d.id = l.decision_id"
                " WHERE (:c IS NULL OR l.cluster_id = :c) ORDER BY l.decided_at",
                {"c": cluster_id},
            )
        ]

    def cluster_label(self, cluster_id: str) -> Verdict | None:
        """A cluster's current label: its latest standing decision by any reviewer."""
        row = self._one(
            "SELECT verdict FROM labels WHERE cluster_id = ? ORDER BY decision_id DESC LIMIT 1", (cluster_id,)
        )
        return Verdict(row[0]) if row else None

    def rebuild_labels(self) -> None:
        """Recompute labels and review counts from the decision log alone (repair, tests)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM labels")
            conn.execute(
                "INSERT INTO labels (cluster_id, reviewer, verdict, decision_id, agrees, note, decided_at)"
                " SELECT cluster_id, reviewer, verdict, id, agrees, note, created_at FROM decisions d"
                " WHERE d.id = (SELECT max(id) FROM decisions x WHERE x.cluster_id = d.cluster_id"
                " AND x.reviewer = d.reviewer) AND d.verdict IS NOT NULL"
            )
            conn.execute(
                "UPDATE clusters SET n_reviews = (SELECT count(*) FROM labels l WHERE l.cluster_id = clusters.id)"
            )

        self._write(write)

    def reviewers(self) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT reviewer FROM decisions ORDER BY reviewer")]

    # ----------------------------------------------------------------- review queue

    def next_cluster(
        self,
        reviewer: str,
        filter: str = "unreviewed",
        sort: str = "id",
        wanted: int = 1,
        search: str = "",
        exclude: Sequence[str] = (),
        after: str | None = None,
        hold_seconds: float = HOLD_SECONDS,
    ) -> str | None:
        """The next cluster for `reviewer`, held for them so a colleague is handed another one.

        `exclude` are clusters skipped in this session; `after` (browse filters) continues past a
        cluster in sort order. The hold is taken in the same transaction as the choice.
        """
        where, params = self._queue_where(reviewer, filter, wanted, search, exclude)
        if after is not None and sort == "id":
            where += " AND c.nkey > :after"
            params["after"] = natural_key(after)
        select = self._queue_select(where, filter, sort, wanted)

        def write(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(select, params).fetchone()
            conn.execute("DELETE FROM holds WHERE reviewer = ? OR expires_at <= ?", (reviewer, params["now"]))
            if row is None:
                return None
            conn.execute(
                # A live hold of a colleague (only possible under browse filters) is not stolen.
                "INSERT INTO holds (cluster_id, reviewer, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cluster_id) DO NOTHING",
                (row[0], reviewer, params["now"] + hold_seconds),
            )
            return row[0]

        return self._write(write)

    @staticmethod
    def _queue_select(where: str, filter: str, sort: str, wanted: int) -> str:
        """SQL for the first cluster of a queue, fast at 100,000 clusters.

        "Needs review" filters only take clusters with n_reviews < wanted, so the query asks each
        n_reviews value 0..wanted-1 separately (an ordered walk of clusters_queue or
        clusters_queue_size, stopping at the first match) and keeps the first of those few
        candidates: the same answer as one ORDER BY over all clusters, without scanning the
        clusters colleagues have already finished. Other filters and sorts use the plain query,
        as does "unparsed": its few rows are found faster from their own partial index.
        """
        order = QUEUE_SORTS[sort]
        if QUEUE_FILTERS[filter].startswith(_NEEDS_ME) and filter != "unparsed" and sort in ("id", "size"):
            parts = [
                f"SELECT * FROM (SELECT c.id, c.nkey, c.size FROM clusters c WHERE c.n_reviews = {r}"
                f" AND {where} ORDER BY {order} LIMIT 1)"
                for r in range(max(int(wanted), 1))
            ]
            return f"SELECT c.id FROM ({' UNION ALL '.join(parts)}) c ORDER BY {order} LIMIT 1"
        return f"SELECT c.id FROM clusters c WHERE {where} ORDER BY {order} LIMIT 1"

    def queue_count(
        self, reviewer: str, filter: str = "unreviewed", wanted: int = 1, search: str = "", exclude: Sequence[str] = ()
    ) -> int:
        where, params = self._queue_where(reviewer, filter, wanted, search, exclude)
        return self._one(f"SELECT count(*) FROM clusters c WHERE {where}", params)[0]

    @staticmethod
    def _queue_where(
        reviewer: str, filter: str, wanted: int, search: str, exclude: Sequence[str]
    ) -> tuple[str, dict[str, Any]]:
        if filter not in QUEUE_FILTERS:
            raise ValueError(f"unknown filter {filter!r}; choose from {', '.join(QUEUE_FILTERS)}")
        where = QUEUE_FILTERS[filter]
        params: dict[str, Any] = {"me": reviewer, "now": time.time(), "wanted": wanted}
        if search.strip():
            where += _search_sql(search.strip())
            escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params["search"] = f"%{escaped}%"
        if exclude:
            where += " AND c.id NOT IN (SELECT value FROM json_each(:exclude))"
            params["exclude"] = json.dumps(list(exclude))
        return where, params

    def release_holds(self, reviewer: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM holds WHERE reviewer = ?", (reviewer,)))

    def progress(self, reviewer: str | None = None) -> tuple[int, int, int]:
        """(clusters reviewed by anyone, clusters reviewed by `reviewer`, all clusters)."""
        row = self._one(
            "SELECT (SELECT count(*) FROM clusters WHERE n_reviews > 0),"
            " (SELECT count(*) FROM labels WHERE reviewer = ?), (SELECT count(*) FROM clusters)",
            (reviewer or "",),
        )
        return row[0], row[1], row[2]

    # ----------------------------------------------------------------- summaries

    def stats(self) -> Stats:
        row = self._one(
            "SELECT (SELECT count(*) FROM clusters), (SELECT count(*) FROM proposals),"
            " (SELECT count(*) FROM proposals WHERE verdict IS NULL), (SELECT count(*) FROM decisions),"
            " (SELECT count(*) FROM clusters WHERE n_reviews > 0)"
        )
        return Stats(row[0], row[1], row[2], row[3], row[4], tuple(self.reviewers()))

    def backup(self, out: str | os.PathLike[str]) -> None:
        """A consistent snapshot while others write: SQLite's online backup API."""
        target = sqlite3.connect(out)
        try:
            self.conn.backup(target)
        finally:
            target.close()

    # --- few-shot curation (examples, guidelines, second-look queue)

    def reviewed_clusters(self, cluster_id: str | None = None) -> list[dict[str, Any]]:
        """One row per reviewed cluster: its current label and what few-shot curation needs.

        `verdict` is the latest standing label; `n_verdicts` > 1 means reviewers disagree (such
        a cluster is neither a good example nor a gold label); `overridden` is 1 when any
        reviewer's standing decision disagrees with the proposal it answered.
        """
        rows = self._all(
            "SELECT l.cluster_id, l.verdict, l.decision_id, l.agrees, l.note, l.reviewer,"
            " d.proposal_id, d.guideline, p.verdict AS model_verdict, p.reason AS model_reason,"
            f" {CLUSTER_TEXT_SQL} AS text, e.reason AS example_reason,"
            " (SELECT count(DISTINCT x.verdict) FROM labels x WHERE x.cluster_id = l.cluster_id) AS n_verdicts,"
            " EXISTS (SELECT 1 FROM labels x WHERE x.cluster_id = l.cluster_id AND x.agrees = 0) AS overridden"
            " FROM labels l JOIN decisions d ON d.id = l.decision_id JOIN clusters c ON c.id = l.cluster_id"
            " LEFT JOIN proposals p ON p.id = d.proposal_id LEFT JOIN examples e ON e.cluster_id = l.cluster_id"
            " WHERE l.decision_id = (SELECT max(y.decision_id) FROM labels y WHERE y.cluster_id = l.cluster_id)"
            " AND (:c IS NULL OR l.cluster_id = :c) ORDER BY c.nkey",
            {"c": cluster_id},
        )
        return [dict(r) for r in rows]

    def set_example(
        self, cluster_id: str, verdict: Verdict, reason: str, marked_by: str, decision_id: int | None = None
    ) -> None:
        """Mark (or re-mark, editing the reason) a cluster as a few-shot example."""
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO examples (cluster_id, verdict, reason, decision_id, marked_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cluster_id) DO UPDATE SET verdict = excluded.verdict,"
                " reason = excluded.reason, decision_id = excluded.decision_id, marked_by = excluded.marked_by,"
                " created_at = excluded.created_at",
                (cluster_id, Verdict(verdict).value, reason, decision_id, marked_by, utcnow()),
            )
        )

    def remove_example(self, cluster_id: str) -> bool:
        """Unmark an example; prompt versions already built from it keep their copy."""
        return bool(
            self._write(lambda conn: conn.execute("DELETE FROM examples WHERE cluster_id = ?", (cluster_id,)).rowcount)
        )

    def examples(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Marked examples (all, or the given cluster ids) in natural cluster order."""
        rows = self._all(
            "SELECT e.* FROM examples e JOIN clusters c ON c.id = e.cluster_id"
            " WHERE :ids IS NULL OR e.cluster_id IN (SELECT value FROM json_each(:ids)) ORDER BY c.nkey",
            {"ids": None if ids is None else json.dumps(list(ids))},
        )
        return [dict(r) for r in rows]

    def save_guideline(self, version: str, text: str) -> None:
        """Keep a guideline text by its hash so `decisions.guideline` can always be resolved."""
        self._write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO guidelines (version, text, created_at) VALUES (?, ?, ?)",
                (version, text, utcnow()),
            )
        )

    def guidelines(self) -> list[dict[str, Any]]:
        """Every guideline text ever set, oldest first, with how many standing labels used it."""
        return [
            dict(r)
            for r in self._all(
                "SELECT g.*, (SELECT count(*) FROM labels l JOIN decisions d ON d.id = l.decision_id"
                " WHERE d.guideline = g.version) AS n_labels FROM guidelines g ORDER BY g.created_at"
            )
        ]

    def labels_not_under(self, guideline: str | None) -> list[dict[str, Any]]:
        """Standing labels decided under another guideline than `guideline` (or none recorded)."""
        return [
            dict(r)
            for r in self._all(
                "SELECT l.cluster_id, l.reviewer, l.verdict, l.decision_id, d.guideline FROM labels l"
                " JOIN decisions d ON d.id = l.decision_id JOIN clusters c ON c.id = l.cluster_id"
                " WHERE d.guideline IS NOT ? ORDER BY c.nkey, l.reviewer",
                (guideline,),
            )
        ]

    def queue_rechecks(self, cluster_ids: Iterable[str], why: str = "") -> int:
        """Queue clusters for a second look (the Review page's "recheck" filter); returns how many."""
        ids = list(dict.fromkeys(cluster_ids))
        now = utcnow()
        self._write(
            lambda conn: conn.executemany(
                "INSERT INTO rechecks (cluster_id, why, queued_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cluster_id) DO UPDATE SET why = excluded.why, queued_at = excluded.queued_at",
                [(i, why, now) for i in ids],
            )
        )
        return len(ids)

    def pending_rechecks(self) -> list[dict[str, Any]]:
        """Queued clusters nobody has decided since they were queued."""
        return [
            dict(r)
            for r in self._all(
                "SELECT r.* FROM rechecks r JOIN clusters c ON c.id = r.cluster_id WHERE NOT EXISTS"
                " (SELECT 1 FROM decisions d WHERE d.cluster_id = r.cluster_id AND d.action = 'decide'"
                " AND d.created_at > r.queued_at) ORDER BY c.nkey"
            )
        ]

    @staticmethod
    def _current_guideline(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT value FROM settings WHERE key = 'guideline'").fetchone()
        return row[0] if row else None

    # --- agreement and export (metrics, label export, DataComp uid subset)

    def proposal_verdicts(self) -> list[dict[str, Any]]:
        """id, cluster_id, judge, prompt_version, verdict (None = unparsed), reason, created_at.

        The light columns metrics and the Agreement page need, without building a Proposal
        (and its raw text) per row.
        """
        return [
            dict(r)
            for r in self._all(
                "SELECT id, cluster_id, judge, prompt_version, verdict, reason, created_at FROM proposals ORDER BY id"
            )
        ]

    EXPORT_COLUMNS = (
        "cluster_id", "label", "label_source", "reviewers", "n_reviews", "decided_at",
        "model_verdict", "model_reason", "judge", "prompt_version", "agrees", "note",
    )

    def export_rows(self, include_unreviewed: bool = False, prefer_version: str | None = None) -> list[tuple[Any, ...]]:
        """One tuple per cluster in `EXPORT_COLUMNS` order, natural id order, in one query.

        label: the latest standing decision (as `cluster_label`); reviewers: a JSON array of
        the reviewers with a standing label, by name; note: their non-empty notes in the same
        order, one per line (so a first reviewer's reasoning is not lost). The model verdict
        is the latest *parsed* proposal of any judge, preferring `prefer_version` (the active
        prompt) when that version answered. Unreviewed clusters are included (label_source
        'model_only', label = model verdict) only when asked and only with a parsed proposal.
        """
        cur = self.conn.cursor()
        cur.row_factory = None  # plain tuples: 100,000 rows straight into a DataFrame
        cur.execute(self._EXPORT_WITH + " SELECT " + self._EXPORT_SELECT + self._EXPORT_FROM,
                    {"pv": prefer_version, "unrev": int(include_unreviewed)})
        return cur.fetchall()

    def export_json_lines(self, include_unreviewed: bool = False, prefer_version: str | None = None) -> list[str]:
        """The `export_rows` rows as JSON object texts (keys `EXPORT_COLUMNS`), built by SQLite.

        For the JSONL export (and a pyarrow JSON parse for CSV / Parquet): SQLite's C JSON
        encoder writes the lines, so no Python object is made per value.
        """
        pairs = ", ".join(f"'{name}', {expr}" for name, expr in zip(self.EXPORT_COLUMNS, self._EXPORT_JSON_VALUES))
        cur = self.conn.cursor()
        cur.row_factory = None
        cur.execute(self._EXPORT_WITH + f" SELECT json_object({pairs})" + self._EXPORT_FROM,
                    {"pv": prefer_version, "unrev": int(include_unreviewed)})
        return [row[0] for row in cur.fetchall()]

    # One GROUP BY per table (each walks its (cluster_id, ...) index in order); bare
    # columns next to max() come from the row holding the max, as SQLite documents:
    # the latest standing label, and the preferred-then-latest parsed proposal.
    _EXPORT_WITH = (
        "WITH lab AS (SELECT cluster_id, verdict, decided_at, max(decision_id) AS last_id,"
        " json_group_array(reviewer) AS reviewers, count(*) AS n_reviews,"
        " group_concat(note, char(10)) FILTER (WHERE note != '') AS notes FROM labels GROUP BY cluster_id),"
        " prop AS (SELECT cluster_id, verdict, reason, judge, prompt_version,"
        " max(coalesce(prompt_version = :pv, 0) * 1099511627776 + id) AS rank_key"
        " FROM proposals WHERE verdict IS NOT NULL GROUP BY cluster_id)"
    )
    _EXPORT_VALUES = (
        "c.id", "coalesce(lab.verdict, prop.verdict)",
        "CASE WHEN lab.verdict IS NOT NULL THEN 'reviewed' ELSE 'model_only' END",
        "coalesce(lab.reviewers, '[]')", "coalesce(lab.n_reviews, 0)", "lab.decided_at",
        "prop.verdict", "prop.reason", "prop.judge", "prop.prompt_version",
        "CASE WHEN lab.verdict IS NULL OR prop.verdict IS NULL THEN NULL ELSE lab.verdict = prop.verdict END",
        "coalesce(lab.notes, '')",
    )
    _EXPORT_SELECT = ", ".join(_EXPORT_VALUES)
    # As JSON: reviewers stay an array (json()), agrees a JSON boolean.
    _EXPORT_JSON_VALUES = tuple(
        f"json({v})" if n == "reviewers" else f"CASE {v} WHEN 1 THEN json('true') WHEN 0 THEN json('false') END"
        if n == "agrees" else v for n, v in zip(EXPORT_COLUMNS, _EXPORT_VALUES)
    )
    _EXPORT_FROM = (
        " FROM clusters c LEFT JOIN lab ON lab.cluster_id = c.id LEFT JOIN prop ON prop.cluster_id = c.id"
        " WHERE lab.verdict IS NOT NULL OR (:unrev AND prop.verdict IS NOT NULL) ORDER BY c.nkey"
    )

    # --- review (the Review page: read-only peek, holds on jumped-to clusters)

    def peek_cluster(self, filter: str = "all", sort: str = "id", search: str = "") -> str | None:
        """The first cluster a filter shows, without a reviewer and without taking a hold.

        The Review page shows it read-only until someone names themselves.
        """
        where, params = self._queue_where("", filter, MAX_PEEK_WANTED, search, ())
        row = self._one(self._queue_select(where, filter, sort, MAX_PEEK_WANTED), params)
        return row[0] if row else None

    def hold_cluster(self, cluster_id: str, reviewer: str, hold_seconds: float = HOLD_SECONDS) -> None:
        """Hold a cluster the reviewer opened by id or by undo (their other holds are released).

        Unlike `next_cluster`, an explicit jump takes the cluster even from a colleague's hold:
        the reviewer asked for exactly this one.
        """
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM holds WHERE reviewer = ? OR expires_at <= ?", (reviewer, now))
            conn.execute(
                "INSERT INTO holds (cluster_id, reviewer, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cluster_id) DO UPDATE SET reviewer = excluded.reviewer,"
                " expires_at = excluded.expires_at",
                (cluster_id, reviewer, now + hold_seconds),
            )

        self._write(write)

    def has_proposals(self) -> bool:
        """Whether any judge has answered yet (the Review page offers the offline judge if not)."""
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM proposals)")[0])

    def reviewer_label_count(self, reviewer: str) -> int:
        """How many clusters `reviewer` currently has a verdict on (an index range on labels)."""
        return self._one("SELECT count(*) FROM labels WHERE reviewer = ?", (reviewer,))[0]
