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
from clusterqc.store.connection import utcnow
from clusterqc.store.datasets import DatasetTable
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
        dataset=row["dataset"],
        content_hash=row["content_hash"],
    )


def _in(alias: str, dataset: str | None) -> str:
    return f" AND {alias}.dataset = :ds" if dataset is not None else ""


class DecisionTable(DatasetTable):
    """The `decisions` log and the `labels` derived from it."""

    def decide(
        self,
        cluster_id: str,
        reviewer: str,
        verdict: Verdict,
        proposal_id: int | None = None,
        note: str = "",
        guideline: str | None = None,
        dataset: str | None = None,
    ) -> Decision:
        """Append a reviewer's verdict and update the derived labels, in one transaction.

        The decision records the content hash the cluster has now: a later `import --replace`
        with other content leaves it in the log but no longer lets it form the label.
        """
        if not reviewer or not reviewer.strip():
            raise ValueError("a decision needs a reviewer name")
        verdict = Verdict(verdict)
        ds = self._dataset(dataset)
        return self._write(
            lambda conn: self._decide_in(conn, ds, cluster_id, reviewer, verdict, proposal_id, note, guideline)
        )

    def decide_many(
        self, reviewer: str, rows: Sequence[tuple[str, Verdict, str]], dataset: str | None = None
    ) -> list[Decision]:
        """Append many (cluster_id, verdict, note) decisions by one reviewer in ONE transaction.

        Each row goes through exactly the path `decide` takes (same labels, review counts,
        guideline), so an imported decision is indistinguishable from one made on the Review
        page; any failure rolls the whole batch back (import-decisions is all or nothing).
        """
        if not reviewer or not reviewer.strip():
            raise ValueError("a decision needs a reviewer name")
        items = [(cid, Verdict(v), note) for cid, v, note in rows]
        ds = self._dataset(dataset)
        return self._write(
            lambda conn: [self._decide_in(conn, ds, cid, reviewer, v, None, note, None) for cid, v, note in items]
        )

    def _decide_in(
        self,
        conn: sqlite3.Connection,
        ds: str,
        cluster_id: str,
        reviewer: str,
        verdict: Verdict,
        proposal_id: int | None,
        note: str,
        guideline: str | None,
    ) -> Decision:
        """One decision inside the caller's transaction: the log row, the label, the hold, the skip.

        The decision records the content hash the cluster has now: a later `import --replace`
        with other content leaves it in the log but no longer lets it form the label.
        """
        found = conn.execute("SELECT content_hash FROM clusters WHERE dataset = ? AND id = ?", (ds, cluster_id)).fetchone()
        content_hash = found[0] if found else ""  # no such cluster: the foreign key refuses it
        agrees = self._agrees(conn, ds, cluster_id, content_hash, proposal_id, verdict)
        row = {
            "dataset": ds,
            "cluster_id": cluster_id,
            "content_hash": content_hash,
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
        who = (ds, cluster_id, row["reviewer"])
        conn.execute("DELETE FROM holds WHERE dataset = ? AND cluster_id = ? AND reviewer = ?", who)
        # A decided cluster is no longer one of the reviewer's skips (m006).
        conn.execute("DELETE FROM review_skips WHERE dataset = ? AND cluster_id = ? AND reviewer = ?", who)
        return Decision(**{**row, "verdict": verdict, "agrees": None if agrees is None else bool(agrees)})

    def accept_proposal(self, reviewer: str, proposal_id: int, note: str = "") -> Decision:
        """Accept exactly the proposal that was shown: its cluster, its verdict and its id.

        Why: "Accept" means "the verdict on the screen". Looking up the cluster's latest
        proposal at click time records a newer answer's verdict (maybe the opposite) under the
        old one's id; proposals are never rewritten, so the id alone fixes what was accepted.
        """

        prow = self._one("SELECT dataset, cluster_id, verdict FROM proposals WHERE id = ?", (proposal_id,))
        if prow is None:
            raise ValueError(f"proposal {proposal_id} does not exist")
        if prow["verdict"] is None:
            raise ValueError(f"proposal {proposal_id} has no parsed verdict to accept; decide the cluster instead")
        return self.decide(
            prow["cluster_id"], reviewer, Verdict(prow["verdict"]), proposal_id=proposal_id, note=note,
            dataset=prow["dataset"],
        )

    @staticmethod
    def _agrees(
        conn: sqlite3.Connection, dataset: str, cluster_id: str, content_hash: str, proposal_id: int | None,
        verdict: Verdict,
    ) -> int | None:
        if proposal_id is None:
            return None
        prow = conn.execute(
            "SELECT dataset, cluster_id, content_hash, verdict FROM proposals WHERE id = ?", (proposal_id,)
        ).fetchone()
        if prow is None or (prow["dataset"], prow["cluster_id"]) != (dataset, cluster_id):
            raise ValueError(f"proposal {proposal_id} is not a proposal for cluster {cluster_id}")
        if prow["content_hash"] != content_hash:
            raise ValueError(f"proposal {proposal_id} answered earlier content of cluster {cluster_id}")
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
        """Make `row` the reviewer's current label (or clear it), keeping n_reviews in step.

        A row about content the cluster no longer has (an undo after a replace) changes nothing.
        """
        key = (row["dataset"], row["cluster_id"])
        current = conn.execute("SELECT content_hash FROM clusters WHERE dataset = ? AND id = ?", key).fetchone()
        if current is None or current[0] != row["content_hash"]:
            return
        who = (*key, row["reviewer"])
        had = conn.execute(
            "SELECT 1 FROM labels WHERE dataset = ? AND cluster_id = ? AND reviewer = ?", who
        ).fetchone()
        if row["verdict"] is None:
            conn.execute("DELETE FROM labels WHERE dataset = ? AND cluster_id = ? AND reviewer = ?", who)
        else:
            conn.execute(
                "INSERT INTO labels (dataset, cluster_id, reviewer, verdict, decision_id, agrees, note, decided_at,"
                " content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dataset, cluster_id, reviewer)"
                " DO UPDATE SET verdict = excluded.verdict, decision_id = excluded.decision_id,"
                " agrees = excluded.agrees, note = excluded.note, decided_at = excluded.decided_at,"
                " content_hash = excluded.content_hash",
                (*who, row["verdict"], row["id"], row["agrees"], row["note"], row["created_at"], row["content_hash"]),
            )
        delta = (row["verdict"] is not None) - (had is not None)
        if delta:
            conn.execute("UPDATE clusters SET n_reviews = n_reviews + ? WHERE dataset = ? AND id = ?", (delta, *key))

    def undo_last(self, reviewer: str, dataset: str | None = None) -> Decision | None:
        """Revert the reviewer's latest decision that is not yet reverted, by appending an undo.

        The undo row carries what the reviewer's label was before that decision (None if none),
        so the log alone tells the whole story. Undoing again walks further back. Without
        `dataset`, the latest decision in any dataset.
        """
        ds = self._scope(dataset)

        def write(conn: sqlite3.Connection) -> Decision | None:
            target = conn.execute(
                "SELECT * FROM decisions d WHERE d.reviewer = :me AND d.action = 'decide'" + _in("d", ds)
                + " AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.reverts = d.id)"
                " ORDER BY d.id DESC LIMIT 1",
                {"me": reviewer, "ds": ds},
            ).fetchone()
            if target is None:
                return None
            before = self._label_before(conn, target)
            row = {
                "dataset": target["dataset"],
                "cluster_id": target["cluster_id"],
                "content_hash": target["content_hash"],
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
        """The reviewer's effective row for the same content just before `target` was appended."""
        return conn.execute(
            "SELECT * FROM decisions WHERE dataset = ? AND cluster_id = ? AND reviewer = ? AND id < ?"
            " AND content_hash = ? ORDER BY id DESC LIMIT 1",
            (target["dataset"], target["cluster_id"], target["reviewer"], target["id"], target["content_hash"]),
        ).fetchone()

    def decisions(
        self, cluster_id: str | None = None, reviewer: str | None = None, dataset: str | None = None
    ) -> list[Decision]:
        """The log (every content a cluster had), oldest first."""
        ds = self._dataset(dataset) if cluster_id is not None else self._scope(dataset)
        # Only the given conditions go into the SQL: `(:c IS NULL OR cluster_id = :c)` would keep
        # SQLite from using the cluster/reviewer indexes (a full scan per Review page render).
        conds = [
            sql
            for sql, value in (("dataset = :ds", ds), ("cluster_id = :c", cluster_id), ("reviewer = :r", reviewer))
            if value is not None
        ]
        rows = self._all(
            "SELECT * FROM decisions" + (" WHERE " + " AND ".join(conds) if conds else "") + " ORDER BY id",
            {"c": cluster_id, "r": reviewer, "ds": ds},
        )
        return [_decision_from_row(r) for r in rows]

    def labels(self, cluster_id: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
        """Every reviewer's current label: dataset, cluster_id, reviewer, verdict, agrees, note, decided_at."""
        ds = self._dataset(dataset) if cluster_id is not None else self._scope(dataset)
        return [
            dict(r)
            for r in self._all(
                "SELECT l.*, d.proposal_id, d.guideline FROM labels l JOIN decisions d ON d.id = l.decision_id"
                " WHERE (:c IS NULL OR l.cluster_id = :c)" + _in("l", ds) + " ORDER BY l.decided_at",
                {"c": cluster_id, "ds": ds},
            )
        ]

    def cluster_label(self, cluster_id: str, dataset: str | None = None) -> Verdict | None:
        """A cluster's current label: its latest standing decision by any reviewer."""
        row = self._one(
            "SELECT verdict FROM labels WHERE dataset = ? AND cluster_id = ? ORDER BY decision_id DESC LIMIT 1",
            (self._dataset(dataset), cluster_id),
        )
        return Verdict(row[0]) if row else None

    def rebuild_labels(self) -> None:
        """Recompute labels and review counts from the decision log alone (repair, tests).

        Only decisions about a cluster's current content form its labels.
        """

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM labels")
            conn.execute(
                "INSERT INTO labels (dataset, cluster_id, reviewer, verdict, decision_id, agrees, note, decided_at,"
                " content_hash) SELECT d.dataset, d.cluster_id, d.reviewer, d.verdict, d.id, d.agrees, d.note,"
                " d.created_at, d.content_hash FROM decisions d JOIN clusters c ON c.dataset = d.dataset"
                " AND c.id = d.cluster_id AND c.content_hash = d.content_hash"
                " WHERE d.id = (SELECT max(id) FROM decisions x WHERE x.dataset = d.dataset"
                " AND x.cluster_id = d.cluster_id AND x.reviewer = d.reviewer AND x.content_hash = d.content_hash)"
                " AND d.verdict IS NOT NULL"
            )
            conn.execute(
                "UPDATE clusters SET n_reviews = (SELECT count(*) FROM labels l WHERE l.dataset = clusters.dataset"
                " AND l.cluster_id = clusters.id)"
            )

        self._write(write)

    def decisions_since(self, since: str | None, dataset: str | None = None, cap: int | None = None) -> int:
        """Verdicts appended after `since` (an ISO time; None: all of them), undos not counted.

        With `cap`, only the newest `cap` verdicts are looked at (the log is appended in time
        order), so the answer is at most `cap` and costs `cap` rows, not the whole log.
        """
        ds = self._scope(dataset)
        if cap is None:
            newest = "SELECT created_at FROM decisions d WHERE action = 'decide'" + _in("d", ds)
        else:  # `+d.dataset`: walk the log from its end (by id), not the dataset index and a sort
            newest = ("SELECT created_at FROM decisions d WHERE action = 'decide'"
                      + (" AND +d.dataset = :ds" if ds is not None else "") + " ORDER BY id DESC LIMIT :cap")
        return self._one(
            f"SELECT count(*) FROM ({newest}) WHERE :since IS NULL OR created_at > :since",
            {"since": since, "ds": ds, "cap": cap},
        )[0]

    def agreed_label_counts(self, dataset: str, cap: int) -> tuple[int, int]:
        """Clusters whose current labels all say Acceptable, and all say Unacceptable, each
        counted up to `cap`.

        Why the cap: the Review page asks on every key press whether there is enough to learn
        from; stopping at `cap` clusters of each verdict keeps that a few index steps at
        100,000 labels instead of a scan of all of them.
        """
        sql = (
            "SELECT count(*) FROM (SELECT 1 FROM labels WHERE dataset = :ds GROUP BY cluster_id"
            " HAVING min(verdict) = :v AND max(verdict) = :v LIMIT :cap)"
        )
        ds = self._dataset(dataset)
        return (
            self._one(sql, {"ds": ds, "v": Verdict.ACCEPTABLE.value, "cap": cap})[0],
            self._one(sql, {"ds": ds, "v": Verdict.UNACCEPTABLE.value, "cap": cap})[0],
        )

    def reviewers(self, dataset: str | None = None) -> list[str]:
        ds = self._scope(dataset)
        return [r[0] for r in self._all(
            "SELECT DISTINCT reviewer FROM decisions d WHERE 1" + _in("d", ds) + " ORDER BY reviewer", {"ds": ds}
        )]

    def reviewer_label_count(self, reviewer: str, dataset: str | None = None) -> int:
        """How many clusters `reviewer` currently has a verdict on (an index range on labels)."""
        ds = self._scope(dataset)
        return self._one(
            "SELECT count(*) FROM labels l WHERE reviewer = :me" + _in("l", ds), {"me": reviewer, "ds": ds}
        )[0]

    def reviewer_decisions_since(self, reviewer: str, since: str, window: int = 20_000) -> tuple[int, str | None]:
        """(decisions `reviewer` appended at or after `since` (ISO UTC), the first one's time).

        Why a window: the pace line is drawn on every rerun; walking the reviewer's newest
        `window` rows through decisions_reviewer is bounded however long the log grows, and no
        curator decides 20,000 clusters in one day. Across datasets: it is the reviewer's pace.
        """
        row = self._one(
            "SELECT count(*), min(created_at) FROM (SELECT created_at FROM decisions WHERE reviewer = ?"
            " AND action = 'decide' ORDER BY id DESC LIMIT ?) WHERE created_at >= ?",
            (reviewer, window, since),
        )
        return int(row[0]), row[1]
