"""The review queue: which cluster a reviewer gets next, and the holds that keep two apart."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from clusterqc.store.clusters import _search_sql, natural_key
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
_UNCERTAINTY = (
    "((SELECT count(DISTINCT p.verdict) FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id"
    " AND p.content_hash = c.content_hash)"
    " + (SELECT count(*) > 0 FROM proposals p WHERE p.dataset = c.dataset AND p.cluster_id = c.id"
    " AND p.content_hash = c.content_hash AND p.verdict IS NULL))"
)
QUEUE_SORTS: dict[str, str] = {
    "id": "c.nkey",
    "size": "c.size DESC, c.nkey",  # SQLite sorts NULL lowest: unknown sizes come last
    "uncertainty": f"{_UNCERTAINTY} DESC, c.nkey",
}



class ReviewQueue(DatasetTable):
    """Queue selection over one dataset's `clusters`, and the `holds` table."""

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

