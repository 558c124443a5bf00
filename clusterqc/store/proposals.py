"""Proposals (a judge's answer per cluster and prompt version) and failures (requests that got none)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from clusterqc.model import Proposal, Verdict
from clusterqc.store.connection import Connection, utcnow


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
        confidence=row["confidence"],
    )



class ProposalTable(Connection):
    """The `proposals` and `failures` tables."""

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
            " parse_error, latency_s, prompt_tokens, completion_tokens, created_at, confidence)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                p.confidence,
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

    def proposal_raws(self, judge: str, prompt_version: str, ids: Iterable[str]) -> dict[str, str]:
        """cluster id -> raw answer of this judge and prompt version, for the given clusters."""
        return {
            r[0]: r[1]
            for r in self._all(
                "SELECT cluster_id, raw FROM proposals WHERE judge = ? AND prompt_version = ?"
                " AND cluster_id IN (SELECT value FROM json_each(?))",
                (judge, prompt_version, json.dumps(list(ids))),
            )
        }

    def newest_proposal_time(self, judge: str) -> str | None:
        """When `judge` last stored a proposal (the learned judge: when it was last trained)."""
        return self._one("SELECT max(created_at) FROM proposals WHERE judge = ?", (judge,))[0]

    def has_proposals(self) -> bool:
        """Whether any judge has answered yet (the Review page offers the offline judge if not)."""
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM proposals)")[0])

