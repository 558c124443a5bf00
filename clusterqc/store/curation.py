"""Prompt versions, settings, few-shot examples, guidelines and second-look rechecks."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from clusterqc.model import Verdict
from clusterqc.store.clusters import CLUSTER_TEXT_SQL
from clusterqc.store.connection import Connection, utcnow


def current_guideline(conn: sqlite3.Connection) -> str | None:
    """The guideline in force (a decision records it, so a later change can queue a second look)."""
    row = conn.execute("SELECT value FROM settings WHERE key = 'guideline'").fetchone()
    return row[0] if row else None


class CurationTables(Connection):
    """The `prompts`, `settings`, `examples`, `guidelines` and `rechecks` tables."""

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

