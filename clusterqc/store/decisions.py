"""Decisions (the append-only log) and labels (each reviewer's standing verdict, derived from it).

`labels` and `clusters.n_reviews` are derived inside the same transaction as each append, so
the review queue stays an index lookup at 100,000 clusters; `rebuild_labels` recomputes them
from the log alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from clusterqc.model import Decision, Verdict
from clusterqc.store.connection import Connection, utcnow
from clusterqc.store.curation import current_guideline


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



class DecisionTable(Connection):
    """The `decisions` log and the `labels` derived from it."""

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
        return self._write(lambda conn: self._decide_in(conn, cluster_id, reviewer, verdict, proposal_id, note, guideline))

    def decide_many(self, reviewer: str, rows: Sequence[tuple[str, Verdict, str]]) -> list[Decision]:
        """Append many (cluster_id, verdict, note) decisions by one reviewer in ONE transaction.

        Each row goes through exactly the path `decide` takes (same labels, review counts,
        guideline), so an imported decision is indistinguishable from one made on the Review
        page; any failure rolls the whole batch back (import-decisions is all or nothing).
        """
        if not reviewer or not reviewer.strip():
            raise ValueError("a decision needs a reviewer name")
        items = [(cid, Verdict(v), note) for cid, v, note in rows]
        return self._write(
            lambda conn: [self._decide_in(conn, cid, reviewer, v, None, note, None) for cid, v, note in items]
        )

    def _decide_in(
        self,
        conn: sqlite3.Connection,
        cluster_id: str,
        reviewer: str,
        verdict: Verdict,
        proposal_id: int | None,
        note: str,
        guideline: str | None,
    ) -> Decision:
        """One decision inside the caller's transaction: the log row, the label, the hold."""
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
            "guideline": guideline if guideline is not None else current_guideline(conn),
            "created_at": utcnow(),
        }
        row["id"] = self._append_decision(conn, row)
        self._set_label(conn, row)
        conn.execute("DELETE FROM holds WHERE cluster_id = ? AND reviewer = ?", (cluster_id, row["reviewer"]))
        # A decided cluster is no longer one of the reviewer's skips (m006).
        conn.execute("DELETE FROM review_skips WHERE cluster_id = ? AND reviewer = ?", (cluster_id, row["reviewer"]))
        return Decision(**{**row, "verdict": verdict, "agrees": None if agrees is None else bool(agrees)})

    def accept_proposal(self, reviewer: str, proposal_id: int, note: str = "") -> Decision:
        """Accept exactly the proposal that was shown: its cluster, its verdict and its id.

        Why: "Accept" means "the verdict on the screen". Looking up the cluster's latest
        proposal at click time records a newer answer's verdict (maybe the opposite) under the
        old one's id; proposals are never rewritten, so the id alone fixes what was accepted.
        """

        prow = self._one("SELECT cluster_id, verdict FROM proposals WHERE id = ?", (proposal_id,))
        if prow is None:
            raise ValueError(f"proposal {proposal_id} does not exist")
        if prow["verdict"] is None:
            raise ValueError(f"proposal {proposal_id} has no parsed verdict to accept; decide the cluster instead")
        return self.decide(prow["cluster_id"], reviewer, Verdict(prow["verdict"]), proposal_id=proposal_id, note=note)

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

    def decisions_since(self, since: str | None) -> int:
        """Verdicts appended after `since` (an ISO time; None: all of them), undos not counted."""
        return self._one(
            "SELECT count(*) FROM decisions WHERE action = 'decide' AND (:since IS NULL OR created_at > :since)",
            {"since": since},
        )[0]

    def reviewers(self) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT reviewer FROM decisions ORDER BY reviewer")]

    def reviewer_label_count(self, reviewer: str) -> int:
        """How many clusters `reviewer` currently has a verdict on (an index range on labels)."""
        return self._one("SELECT count(*) FROM labels WHERE reviewer = ?", (reviewer,))[0]

    def reviewer_decisions_since(self, reviewer: str, since: str, window: int = 20_000) -> tuple[int, str | None]:
        """(decisions `reviewer` appended at or after `since` (ISO UTC), the first one's time).

        Why a window: the pace line is drawn on every rerun; walking the reviewer's newest
        `window` rows through decisions_reviewer is bounded however long the log grows, and no
        curator decides 20,000 clusters in one day.
        """
        row = self._one(
            "SELECT count(*), min(created_at) FROM (SELECT created_at FROM decisions WHERE reviewer = ?"
            " AND action = 'decide' ORDER BY id DESC LIMIT ?) WHERE created_at >= ?",
            (reviewer, window, since),
        )
        return int(row[0]), row[1]
