"""Proposals (a judge's answer per cluster and prompt version) and failures (requests that got none)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from clusterqc.model import Proposal, Verdict
from clusterqc.store.connection import utcnow
from clusterqc.store.datasets import DatasetTable


# A proposal answers the content it was asked about: after `import --replace` changes a
# cluster, its old answers stay in the table but no longer count as the cluster's proposal.
CURRENT = (
    "EXISTS (SELECT 1 FROM clusters c WHERE c.dataset = p.dataset AND c.id = p.cluster_id"
    " AND c.content_hash = p.content_hash)"
)

# An unknown cluster gets content_hash '' and then fails the foreign key. ?1 is the dataset,
# ?2 the cluster id, ?3 the content hash (None: the cluster's current content).
_INSERT_PROPOSAL = (
    "INSERT OR IGNORE INTO proposals (dataset, cluster_id, content_hash, judge, prompt_version, verdict,"
    " reason, raw, parse_error, latency_s, prompt_tokens, completion_tokens, created_at, confidence)"
    " VALUES (?1, ?2, coalesce(?3, (SELECT content_hash FROM clusters WHERE dataset = ?1 AND id = ?2), ''),"
    " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
)


def _in(alias: str, dataset: str | None) -> str:
    """` AND alias.dataset = :ds` when scoped to one dataset (left out otherwise, so indexes apply)."""
    return f" AND {alias}.dataset = :ds" if dataset is not None else ""


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
        dataset=row["dataset"],
        content_hash=row["content_hash"],
        confidence=row["confidence"],
    )


class ProposalTable(DatasetTable):
    """The `proposals` and `failures` tables."""

    def add_proposal(self, proposal: Proposal) -> int | None:
        """Store one judge answer; returns its id, or None if (cluster, content, judge, prompt) had one.

        `proposal.dataset` None means the only dataset; `content_hash` None, the cluster's
        current content.
        """
        dataset = self._dataset(proposal.dataset)
        return self._write(lambda conn: self._insert_proposal(conn, proposal, dataset))

    def add_proposals(self, proposals: Iterable[Proposal]) -> int:
        """Store many answers in one transaction and one executemany (imports, the learned
        judge's 100,000); returns how many were new."""
        items = list(proposals)
        only = None if all(p.dataset for p in items) else self._dataset(None)
        params = [self._proposal_params(p, p.dataset or only) for p in items]
        return self._write(lambda conn: conn.executemany(_INSERT_PROPOSAL, params).rowcount) if params else 0

    @staticmethod
    def _insert_proposal(conn: sqlite3.Connection, p: Proposal, dataset: str | None) -> int | None:
        cur = conn.execute(_INSERT_PROPOSAL, ProposalTable._proposal_params(p, dataset))
        return cur.lastrowid if cur.rowcount else None

    @staticmethod
    def _proposal_params(p: Proposal, dataset: str | None) -> tuple[Any, ...]:
        """One row of `_INSERT_PROPOSAL`, by position (binds faster than a dict of names)."""
        return (dataset, p.cluster_id, p.content_hash, p.judge, p.prompt_version, p.verdict.value if p.verdict else None,
                p.reason, p.raw, p.parse_error, p.latency_s, p.prompt_tokens, p.completion_tokens,
                p.created_at or utcnow(), p.confidence)

    def add_failure(
        self, cluster_id: str, judge: str, prompt_version: str, error: str, dataset: str | None = None
    ) -> None:
        """A request that returned no answer: logged, and retried by the next run."""
        ds = self._dataset(dataset)
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO failures (dataset, cluster_id, judge, prompt_version, error, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (ds, cluster_id, judge, prompt_version, error, utcnow()),
            )
        )

    def failures(
        self, judge: str | None = None, prompt_version: str | None = None, dataset: str | None = None
    ) -> list[dict[str, Any]]:
        """Failures not since answered (for the cluster's current content), newest first."""
        ds = self._scope(dataset)
        return [
            dict(r)
            for r in self._all(
                "SELECT f.* FROM failures f JOIN clusters c ON c.dataset = f.dataset AND c.id = f.cluster_id"
                " WHERE (:judge IS NULL OR f.judge = :judge) AND (:pv IS NULL OR f.prompt_version = :pv)"
                + _in("f", ds)
                + " AND NOT EXISTS (SELECT 1 FROM proposals p WHERE p.dataset = f.dataset AND p.cluster_id = f.cluster_id"
                " AND p.judge = f.judge AND p.prompt_version = f.prompt_version AND p.content_hash = c.content_hash)"
                " ORDER BY f.id DESC",
                {"judge": judge, "pv": prompt_version, "ds": ds},
            )
        ]

    def pending_keys(
        self, judge: str, prompt_version: str, limit: int | None = None, ids: Iterable[str] | None = None,
        dataset: str | None = None,
    ) -> list[tuple[str, str]]:
        """(dataset, id) of clusters whose current content has no answer from this judge and
        prompt version: what a run will ask. All datasets unless one is given; `ids` are ids of
        one dataset (the only one when `dataset` is None)."""
        ds = self._dataset(dataset) if ids is not None else self._scope(dataset)
        sql = (
            "SELECT c.dataset, c.id FROM clusters c WHERE NOT EXISTS (SELECT 1 FROM proposals p"
            " WHERE p.dataset = c.dataset AND p.cluster_id = c.id AND p.judge = :judge AND p.prompt_version = :pv"
            " AND p.content_hash = c.content_hash)" + _in("c", ds)
        )
        params: dict[str, Any] = {"judge": judge, "pv": prompt_version, "ds": ds}
        if ids is not None:
            sql += " AND c.id IN (SELECT value FROM json_each(:ids))"
            params["ids"] = json.dumps(list(ids))
        sql += " ORDER BY c.dataset, c.nkey"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = limit
        return [(r[0], r[1]) for r in self._all(sql, params)]

    def pending_cluster_ids(
        self, judge: str, prompt_version: str, limit: int | None = None, ids: Iterable[str] | None = None,
        dataset: str | None = None,
    ) -> list[str]:
        """The ids of `pending_keys` (for one dataset; with several, use `pending_keys`)."""
        return [cid for _, cid in self.pending_keys(judge, prompt_version, limit, ids, dataset)]

    def proposals_for(self, cluster_id: str, dataset: str | None = None) -> list[Proposal]:
        """The answers about the cluster's current content, oldest first."""
        rows = self._all(
            f"SELECT * FROM proposals p WHERE p.dataset = ? AND p.cluster_id = ? AND {CURRENT} ORDER BY p.id",
            (self._dataset(dataset), cluster_id),
        )
        return [_proposal_from_row(r) for r in rows]

    def get_proposal(self, proposal_id: int) -> Proposal | None:
        row = self._one("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
        return _proposal_from_row(row) if row else None

    def proposals(
        self, judge: str | None = None, prompt_version: str | None = None, dataset: str | None = None
    ) -> list[Proposal]:
        ds = self._scope(dataset)
        rows = self._all(
            "SELECT * FROM proposals p WHERE (:j IS NULL OR judge = :j) AND (:pv IS NULL OR prompt_version = :pv)"
            f" AND {CURRENT}" + _in("p", ds) + " ORDER BY id",
            {"j": judge, "pv": prompt_version, "ds": ds},
        )
        return [_proposal_from_row(r) for r in rows]

    def judges(self, dataset: str | None = None) -> list[tuple[str, str, int]]:
        """(judge, prompt version, proposals) for every judge that has answered."""
        ds = self._scope(dataset)
        return [
            (r[0], r[1], r[2])
            for r in self._all(
                f"SELECT judge, prompt_version, count(*) FROM proposals p WHERE {CURRENT}" + _in("p", ds)
                + " GROUP BY judge, prompt_version ORDER BY min(id)",
                {"ds": ds},
            )
        ]

    def proposal_verdicts(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """id, dataset, cluster_id, judge, prompt_version, verdict (None = unparsed), reason, created_at.

        The light columns metrics and the Agreement page need, without building a Proposal
        (and its raw text) per row; answers about replaced content are left out.
        """
        ds = self._scope(dataset)
        return [
            dict(r)
            for r in self._all(
                "SELECT id, dataset, cluster_id, judge, prompt_version, verdict, reason, created_at FROM proposals p"
                f" WHERE {CURRENT}" + _in("p", ds) + " ORDER BY id",
                {"ds": ds},
            )
        ]

    def proposal_raws(
        self, judge: str, prompt_version: str, ids: Iterable[str], dataset: str | None = None
    ) -> dict[str, str]:
        """cluster id -> raw answer of this judge and prompt version, for the given clusters of a dataset."""
        return {
            r[0]: r[1]
            for r in self._all(
                "SELECT cluster_id, raw FROM proposals WHERE dataset = ? AND judge = ? AND prompt_version = ?"
                " AND cluster_id IN (SELECT value FROM json_each(?))",
                (self._dataset(dataset), judge, prompt_version, json.dumps(list(ids))),
            )
        }

    def newest_proposal_time(self, judge: str, dataset: str | None = None) -> str | None:
        """When `judge` last stored a proposal (the learned judge: when it was last trained)."""
        ds = self._scope(dataset)
        return self._one(
            "SELECT max(created_at) FROM proposals p WHERE judge = :judge" + _in("p", ds), {"judge": judge, "ds": ds}
        )[0]

    def has_proposals(self, dataset: str | None = None) -> bool:
        """Whether any judge has answered yet (the Review page offers the offline judge if not)."""
        ds = self._scope(dataset)
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM proposals p WHERE 1" + _in("p", ds) + ")", {"ds": ds})[0])
