"""Prompt versions, settings, few-shot examples, guidelines and second-look rechecks."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from clusterqc.model import Verdict
from clusterqc.store.clusters import CLUSTER_TEXT_SQL
from clusterqc.store.connection import utcnow
from clusterqc.store.datasets import DatasetTable


def current_guideline(conn: sqlite3.Connection) -> str | None:
    """The guideline in force (a decision records it, so a later change can queue a second look)."""
    row = conn.execute("SELECT value FROM settings WHERE key = 'guideline'").fetchone()
    return row[0] if row else None


class CurationTables(DatasetTable):
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


    def reviewed_clusters(self, cluster_id: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
        """One row per reviewed cluster: its current label and what few-shot curation needs.

        `verdict` is the latest standing label; `n_verdicts` > 1 means reviewers disagree (such
        a cluster is neither a good example nor a gold label); `overridden` is 1 when any
        reviewer's standing decision disagrees with the proposal it answered. All datasets
        (by dataset, then id) unless `dataset` or `cluster_id` narrows it.
        """
        ds = self._dataset(dataset) if cluster_id is not None else self._scope(dataset)
        rows = self._all(
            "SELECT l.dataset, l.cluster_id, l.verdict, l.decision_id, l.agrees, l.note, l.reviewer,"
            " d.proposal_id, d.guideline, p.verdict AS model_verdict, p.reason AS model_reason,"
            f" {CLUSTER_TEXT_SQL} AS text, e.reason AS example_reason,"
            " (SELECT count(DISTINCT x.verdict) FROM labels x WHERE x.dataset = l.dataset"
            " AND x.cluster_id = l.cluster_id) AS n_verdicts,"
            " EXISTS (SELECT 1 FROM labels x WHERE x.dataset = l.dataset AND x.cluster_id = l.cluster_id"
            " AND x.agrees = 0) AS overridden"
            " FROM labels l JOIN decisions d ON d.id = l.decision_id"
            " JOIN clusters c ON c.dataset = l.dataset AND c.id = l.cluster_id"
            " LEFT JOIN proposals p ON p.id = d.proposal_id"
            " LEFT JOIN examples e ON e.dataset = l.dataset AND e.cluster_id = l.cluster_id"
            " WHERE l.decision_id = (SELECT max(y.decision_id) FROM labels y WHERE y.dataset = l.dataset"
            " AND y.cluster_id = l.cluster_id)"
            # Conditions only when they narrow: `:c IS NULL OR ...` would keep SQLite off the
            # labels index, and the Review page asks for one cluster on every key press.
            + (" AND l.cluster_id = :c" if cluster_id is not None else "")
            + (" AND l.dataset = :ds" if ds is not None else "") + " ORDER BY c.dataset, c.nkey",
            {"c": cluster_id, "ds": ds},
        )
        return [dict(r) for r in rows]

    def set_example(
        self, cluster_id: str, verdict: Verdict, reason: str, marked_by: str, decision_id: int | None = None,
        dataset: str | None = None,
    ) -> None:
        """Mark (or re-mark, editing the reason) a cluster as a few-shot example."""
        ds = self._dataset(dataset)
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO examples (dataset, cluster_id, verdict, reason, decision_id, marked_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dataset, cluster_id) DO UPDATE SET"
                " verdict = excluded.verdict, reason = excluded.reason, decision_id = excluded.decision_id,"
                " marked_by = excluded.marked_by, created_at = excluded.created_at",
                (ds, cluster_id, Verdict(verdict).value, reason, decision_id, marked_by, utcnow()),
            )
        )

    def remove_example(self, cluster_id: str, dataset: str | None = None) -> bool:
        """Unmark an example; prompt versions already built from it keep their copy."""
        ds = self._dataset(dataset)
        return bool(
            self._write(
                lambda conn: conn.execute(
                    "DELETE FROM examples WHERE dataset = ? AND cluster_id = ?", (ds, cluster_id)
                ).rowcount
            )
        )

    def examples(
        self, ids: Iterable[str] | None = None, dataset: str | None = None,
        keys: Iterable[tuple[str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Marked examples: all (of every dataset, or of `dataset`), the given ids of one dataset,
        or the given (dataset, id) keys; by dataset, then natural cluster order."""
        if keys is None and ids is not None:
            ds = self._dataset(dataset)
            keys = [(ds, i) for i in ids]
        ds = self._scope(dataset) if keys is None else None
        rows = self._all(
            "SELECT e.* FROM examples e JOIN clusters c ON c.dataset = e.dataset AND c.id = e.cluster_id"
            " WHERE (:keys IS NULL OR (e.dataset, e.cluster_id) IN"
            " (SELECT value ->> 0, value ->> 1 FROM json_each(:keys)))"
            " AND (:ds IS NULL OR e.dataset = :ds) ORDER BY c.dataset, c.nkey",
            {"keys": None if keys is None else json.dumps([list(k) for k in keys]), "ds": ds},
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

    def labels_not_under(self, guideline: str | None, dataset: str | None = None) -> list[dict[str, Any]]:
        """Standing labels decided under another guideline than `guideline` (or none recorded)."""
        ds = self._scope(dataset)
        return [
            dict(r)
            for r in self._all(
                "SELECT l.dataset, l.cluster_id, l.reviewer, l.verdict, l.decision_id, d.guideline FROM labels l"
                " JOIN decisions d ON d.id = l.decision_id JOIN clusters c ON c.dataset = l.dataset"
                " AND c.id = l.cluster_id WHERE d.guideline IS NOT :g AND (:ds IS NULL OR l.dataset = :ds)"
                " ORDER BY c.dataset, c.nkey, l.reviewer",
                {"g": guideline, "ds": ds},
            )
        ]

    def queue_rechecks(
        self, cluster_ids: Iterable[str | tuple[str, str]], why: str = "", dataset: str | None = None
    ) -> int:
        """Queue clusters for a second look (the Review page's "recheck" filter); returns how many.

        Each item is an id (of `dataset`, else the only one) or a (dataset, id) key.
        """
        items = list(cluster_ids)
        only = self._dataset(dataset) if any(isinstance(i, str) for i in items) else None
        keys = list(dict.fromkeys((only, i) if isinstance(i, str) else tuple(i) for i in items))
        now = utcnow()
        self._write(
            lambda conn: conn.executemany(
                "INSERT INTO rechecks (dataset, cluster_id, why, queued_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (dataset, cluster_id) DO UPDATE SET why = excluded.why, queued_at = excluded.queued_at",
                [(d, i, why, now) for d, i in keys],
            )
        )
        return len(keys)

    def pending_rechecks(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Queued clusters nobody has decided since they were queued."""
        ds = self._scope(dataset)
        return [
            dict(r)
            for r in self._all(
                "SELECT r.* FROM rechecks r JOIN clusters c ON c.dataset = r.dataset AND c.id = r.cluster_id"
                " WHERE (:ds IS NULL OR r.dataset = :ds) AND NOT EXISTS"
                " (SELECT 1 FROM decisions d WHERE d.dataset = r.dataset AND d.cluster_id = r.cluster_id"
                " AND d.action = 'decide' AND d.created_at > r.queued_at) ORDER BY c.dataset, c.nkey",
                {"ds": ds},
            )
        ]
