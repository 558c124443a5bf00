"""The review queue: which cluster a reviewer gets next, and the holds that keep two apart."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from clusterqc.store.clusters import _search_sql, natural_key
from clusterqc.store.connection import utcnow
from clusterqc.store.datasets import DatasetTable

HOLD_SECONDS = 300
MAX_PEEK_WANTED = 3  # peek_cluster: "needs review" means fewer than this many reviews

# The queue filters the Review page offers. Each maps to a WHERE fragment over `clusters c`;
# ":me" is the reviewer. "Needs review" ones also respect reviews-wanted and holds.
# Every queue is one dataset's (`c.dataset = :ds` is put in front); proposals count only for
# the content they answered.
_NEEDS_ME = (
    "NOT EXISTS (SELECT 1 FROM labels l WHERE l.dataset = c.dataset AND l.cluster_id = c.id AND l.reviewer = :me)"
    " AND c.n_reviews + (SELECT count(*) FROM holds h WHERE h.dataset = c.dataset AND h.cluster_id = c.id"
    " AND h.reviewer != :me AND h.expires_at > :now) < :wanted"
)
_PROPOSED = (
    "EXISTS (SELECT 1 FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id"
    " AND p.content_hash = c.content_hash AND p.verdict {}"
)
QUEUE_FILTERS: dict[str, str] = {
    "unreviewed": _NEEDS_ME,
    "model_acceptable": _NEEDS_ME + " AND " + _PROPOSED.format("= 'Acceptable')"),
    "model_unacceptable": _NEEDS_ME + " AND " + _PROPOSED.format("= 'Unacceptable')"),
    # The three below start from the (usually few) rows they are about, through an index,
    # instead of testing every cluster: at 100,000 clusters that is ~0.1 ms against ~35-130 ms.
    "unparsed": _NEEDS_ME + " AND c.id IN (SELECT p.cluster_id FROM proposals p WHERE p.dataset = :ds"
    " AND p.verdict IS NULL) AND " + _PROPOSED.format("IS NULL)"),
    "disagreements": "c.id IN (SELECT l.cluster_id FROM labels l WHERE l.dataset = :ds AND l.agrees = 0)",
    "mine": "c.id IN (SELECT l.cluster_id FROM labels l WHERE l.reviewer = :me AND l.dataset = :ds)",
    "all": "1",
}
# Few-shot curation: clusters queued for a second look (guidelines changed), not decided since.
RECHECK_FILTER = (
    "EXISTS (SELECT 1 FROM rechecks r WHERE r.dataset = c.dataset AND r.cluster_id = c.id AND NOT EXISTS"
    " (SELECT 1 FROM decisions d WHERE d.dataset = c.dataset AND d.cluster_id = c.id AND d.action = 'decide'"
    " AND d.created_at > r.queued_at))"
)
QUEUE_FILTERS["recheck"] = RECHECK_FILTER
# A reviewer's own skips (m006) are left out of every filter until they choose to revisit them.
_NOT_SKIPPED = (
    " AND NOT EXISTS (SELECT 1 FROM review_skips s WHERE s.reviewer = :me AND s.dataset = c.dataset"
    " AND s.cluster_id = c.id)"
)
_UNCERTAINTY = (
    "((SELECT count(DISTINCT p.verdict) FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id"
    " AND p.content_hash = c.content_hash)"
    " + (SELECT count(*) > 0 FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id"
    " AND p.content_hash = c.content_hash AND p.verdict IS NULL))"
)
# The learned judge (issue 15): its newest proposal per cluster, one step of proposals_cluster_judge.
LEARNED_JUDGE = "learned"
_NEWEST_LEARNED = (
    "(SELECT p.{col} FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id"
    " AND p.judge = '" + LEARNED_JUDGE + "'"
    " ORDER BY p.id DESC LIMIT 1)"
)
# The newest parsed answer of an LLM (any judge but the offline and the learned one).
_NEWEST_LLM_VERDICT = (
    "(SELECT p.verdict FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id AND p.verdict IS NOT NULL"
    " AND p.judge NOT IN ('offline', '" + LEARNED_JUDGE + "') ORDER BY p.id DESC LIMIT 1)"
)
QUEUE_FILTERS["learned_vs_llm"] = (
    _NEEDS_ME + f" AND {_NEWEST_LEARNED.format(col='verdict')} != {_NEWEST_LLM_VERDICT}"
)
QUEUE_SORTS: dict[str, str] = {
    "id": "c.nkey",
    "size": "c.size DESC, c.nkey",  # SQLite sorts NULL lowest: unknown sizes come last
    "uncertainty": f"{_UNCERTAINTY} DESC, c.nkey",
    # Active review: the learned judge's confidence nearest 0.5 first (it is 0.5-1; no learned
    # proposal sorts as 2: last), then the clusters the judges disagree on, then id.
    "least_certain": f"coalesce({_NEWEST_LEARNED.format(col='confidence')}, 2.0), {_UNCERTAINTY} DESC, c.nkey",
}



def _least_certain_select(where: str) -> str:
    """The first cluster of "least certain first", fast at 100,000 clusters.

    Ordering every cluster by a subquery took seconds per pick at 100,000 clusters
    (bench/bench_queue_learned.py). Instead: the lowest confidence among the clusters the
    filter lets through is found by walking proposals_judge_confidence in order (stopping at
    the first eligible newest learned proposal); among the clusters with exactly that
    confidence the judges' disagreement and the id decide. Clusters without a learned proposal
    come after all others, in the "uncertainty" order; that part only runs when no cluster
    with a learned proposal is left.
    """
    newest = (
        f"p.judge = '{LEARNED_JUDGE}' AND p.confidence IS NOT NULL AND p.id = (SELECT max(q.id) FROM proposals q"
        f" WHERE q.dataset = p.dataset AND q.cluster_id = p.cluster_id AND q.judge = '{LEARNED_JUDGE}')"
    )
    eligible = (
        f"FROM proposals p JOIN clusters c ON c.dataset = p.dataset AND c.id = p.cluster_id WHERE {newest} AND {where}"
    )
    best = f"(SELECT p.confidence {eligible} ORDER BY p.confidence LIMIT 1)"
    learned = f"SELECT c.id {eligible} AND p.confidence = {best} ORDER BY {_UNCERTAINTY} DESC, c.nkey LIMIT 1"
    rest = (
        f"SELECT c.id FROM clusters c WHERE NOT EXISTS (SELECT 1 FROM proposals p WHERE p.dataset = c.dataset"
        f" AND p.cluster_id = c.id"
        f" AND p.judge = '{LEARNED_JUDGE}' AND p.confidence IS NOT NULL) AND {where}"
        f" ORDER BY {_UNCERTAINTY} DESC, c.nkey LIMIT 1"
    )
    return f"SELECT id FROM (SELECT * FROM ({learned}) UNION ALL SELECT * FROM ({rest})) LIMIT 1"


class ReviewQueue(DatasetTable):
    """Queue selection over one dataset's `clusters`, the `holds` and `review_skips` tables."""

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
        dataset: str | None = None,
    ) -> str | None:
        """The next cluster for `reviewer`, held for them so a colleague is handed another one.

        `exclude` are clusters skipped in this session; `after` (browse filters) continues past a
        cluster in sort order. The hold is taken in the same transaction as the choice.
        """
        where, params = self._queue_where(reviewer, filter, wanted, search, exclude, self._dataset(dataset))
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
                "INSERT INTO holds (dataset, cluster_id, reviewer, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (dataset, cluster_id) DO NOTHING",
                (params["ds"], row[0], reviewer, params["now"] + hold_seconds),
            )
            return row[0]

        return self._write(write)

    @staticmethod
    def _queue_select(where: str, filter: str, sort: str, wanted: int, limit: int = 1) -> str:
        """SQL for the first cluster of a queue, fast at 100,000 clusters.

        "Needs review" filters only take clusters with n_reviews < wanted, so the query asks each
        n_reviews value 0..wanted-1 separately (an ordered walk of clusters_queue or
        clusters_queue_size, stopping at the first match) and keeps the first of those few
        candidates: the same answer as one ORDER BY over all clusters, without scanning the
        clusters colleagues have already finished. Other filters and sorts use the plain query,
        as does "unparsed": its few rows are found faster from their own partial index.
        """
        order = QUEUE_SORTS[sort]
        if sort == "least_certain":
            return _least_certain_select(where)
        if QUEUE_FILTERS[filter].startswith(_NEEDS_ME) and filter != "unparsed" and sort in ("id", "size"):
            parts = [
                f"SELECT * FROM (SELECT c.id, c.nkey, c.size FROM clusters c WHERE c.n_reviews = {r}"
                f" AND {where} ORDER BY {order} LIMIT {int(limit)})"
                for r in range(max(int(wanted), 1))
            ]
            return f"SELECT c.id FROM ({' UNION ALL '.join(parts)}) c ORDER BY {order} LIMIT {int(limit)}"
        return f"SELECT c.id FROM clusters c WHERE {where} ORDER BY {order} LIMIT {int(limit)}"

    def queue_count(
        self, reviewer: str, filter: str = "unreviewed", wanted: int = 1, search: str = "", exclude: Sequence[str] = (),
        dataset: str | None = None,
    ) -> int:
        where, params = self._queue_where(reviewer, filter, wanted, search, exclude, self._dataset(dataset))
        return self._one(f"SELECT count(*) FROM clusters c WHERE {where}", params)[0]

    @staticmethod
    def _queue_where(
        reviewer: str, filter: str, wanted: int, search: str, exclude: Sequence[str], dataset: str
    ) -> tuple[str, dict[str, Any]]:
        if filter not in QUEUE_FILTERS:
            raise ValueError(f"unknown filter {filter!r}; choose from {', '.join(QUEUE_FILTERS)}")
        where = "c.dataset = :ds AND " + QUEUE_FILTERS[filter]
        params: dict[str, Any] = {"me": reviewer, "now": time.time(), "wanted": wanted, "ds": dataset}
        if search.strip():
            where += _search_sql(search.strip())
            escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params["search"] = f"%{escaped}%"
        if reviewer:
            where += _NOT_SKIPPED
        if exclude:
            where += " AND c.id NOT IN (SELECT value FROM json_each(:exclude))"
            params["exclude"] = json.dumps(list(exclude))
        return where, params

    def release_holds(self, reviewer: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM holds WHERE reviewer = ?", (reviewer,)))

    def progress(self, reviewer: str | None = None, dataset: str | None = None) -> tuple[int, int, int]:
        """(clusters reviewed by anyone, clusters reviewed by `reviewer`, all clusters): of one
        dataset, or of all."""
        ds = self._scope(dataset)
        scoped = "" if ds is None else " AND dataset = :ds"
        row = self._one(
            f"SELECT (SELECT count(*) FROM clusters WHERE n_reviews > 0{scoped}),"
            f" (SELECT count(*) FROM labels WHERE reviewer = :me{scoped}),"
            f" (SELECT count(*) FROM clusters WHERE 1{scoped})",
            {"me": reviewer or "", "ds": ds},
        )
        return row[0], row[1], row[2]

    def peek_cluster(
        self, filter: str = "all", sort: str = "id", search: str = "", dataset: str | None = None
    ) -> str | None:
        """The first cluster a filter shows, without a reviewer and without taking a hold.

        The Review page shows it read-only until someone names themselves.
        """
        where, params = self._queue_where("", filter, MAX_PEEK_WANTED, search, (), self._dataset(dataset))
        row = self._one(self._queue_select(where, filter, sort, MAX_PEEK_WANTED), params)
        return row[0] if row else None

    def hold_cluster(
        self, cluster_id: str, reviewer: str, hold_seconds: float = HOLD_SECONDS, dataset: str | None = None
    ) -> None:
        """Hold a cluster the reviewer opened by id or by undo (their other holds are released).

        Unlike `next_cluster`, an explicit jump takes the cluster even from a colleague's hold:
        the reviewer asked for exactly this one.
        """
        now = time.time()
        ds = self._dataset(dataset)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM holds WHERE reviewer = ? OR expires_at <= ?", (reviewer, now))
            conn.execute(
                "INSERT INTO holds (dataset, cluster_id, reviewer, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (dataset, cluster_id) DO UPDATE SET reviewer = excluded.reviewer,"
                " expires_at = excluded.expires_at",
                (ds, cluster_id, reviewer, now + hold_seconds),
            )

        self._write(write)


    def next_clusters(
        self,
        reviewer: str,
        n: int,
        filter: str = "unreviewed",
        sort: str = "id",
        wanted: int = 1,
        search: str = "",
        exclude: Sequence[str] = (),
        hold_seconds: float = HOLD_SECONDS,
        dataset: str | None = None,
    ) -> list[str]:
        """The next `n` clusters of a queue for bulk review, all held for `reviewer` at once.

        Same choice as `next_cluster` repeated `n` times, in one transaction (so two curators
        paging in bulk side by side get disjoint pages); the reviewer's other holds go.
        """
        where, params = self._queue_where(reviewer, filter, wanted, search, exclude, self._dataset(dataset))
        select = self._queue_select(where, filter, sort, wanted, limit=max(int(n), 1))

        def write(conn: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(select, params).fetchall()]
            conn.execute("DELETE FROM holds WHERE reviewer = ? OR expires_at <= ?", (reviewer, params["now"]))
            conn.executemany(
                "INSERT INTO holds (dataset, cluster_id, reviewer, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (dataset, cluster_id) DO NOTHING",
                [(params["ds"], cid, reviewer, params["now"] + hold_seconds) for cid in ids],
            )
            return ids

        return self._write(write)

    # -- skips (m006): per reviewer, kept across tabs and restarts

    def skip_cluster(self, reviewer: str, cluster_id: str, dataset: str | None = None) -> None:
        """Leave a cluster out of `reviewer`'s queues until they revisit their skips."""
        if not reviewer or not reviewer.strip():
            raise ValueError("a skip needs a reviewer name")
        ds = self._dataset(dataset)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO review_skips (reviewer, dataset, cluster_id, skipped_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (reviewer, dataset, cluster_id) DO UPDATE SET skipped_at = excluded.skipped_at",
                (reviewer.strip(), ds, cluster_id, utcnow()),
            )
            conn.execute(
                "DELETE FROM holds WHERE dataset = ? AND cluster_id = ? AND reviewer = ?", (ds, cluster_id, reviewer.strip())
            )

        self._write(write)

    def skipped_clusters(self, reviewer: str, dataset: str | None = None) -> list[str]:
        """The dataset's clusters `reviewer` has skipped and not decided since, in the order skipped."""
        return [
            r[0]
            for r in self._all(
                "SELECT cluster_id FROM review_skips WHERE reviewer = ? AND dataset = ? ORDER BY skipped_at, rowid",
                (reviewer, self._dataset(dataset)),
            )
        ]

    def unskip(self, reviewer: str, cluster_ids: Sequence[str] | None = None, dataset: str | None = None) -> int:
        """Bring skipped clusters of the dataset back (all of the reviewer's there when `cluster_ids` is None)."""
        ds = self._dataset(dataset)

        def write(conn: sqlite3.Connection) -> int:
            if cluster_ids is None:
                return conn.execute(
                    "DELETE FROM review_skips WHERE reviewer = ? AND dataset = ?", (reviewer, ds)
                ).rowcount
            return conn.execute(
                "DELETE FROM review_skips WHERE reviewer = ? AND dataset = ?"
                " AND cluster_id IN (SELECT value FROM json_each(?))",
                (reviewer, ds, json.dumps(list(cluster_ids))),
            ).rowcount

        return self._write(write)

    def clusters_needing(self, wanted: int = 1, dataset: str | None = None) -> int:
        """Clusters with fewer than `wanted` reviews (the progress line's "still need a review")."""
        ds = self._scope(dataset)
        return self._one(
            "SELECT count(*) FROM clusters WHERE n_reviews < :w AND (:ds IS NULL OR dataset = :ds)",
            {"w": int(wanted), "ds": ds},
        )[0]
