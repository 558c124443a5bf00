"""Summaries and the label export, each built by SQLite in one query."""

from __future__ import annotations

from typing import Any

from clusterqc.model import Stats
from clusterqc.store.datasets import DatasetTable
from clusterqc.store.proposals import CURRENT


class ExportQueries(DatasetTable):
    """Read-only queries across tables: counts, and one row per cluster for export."""

    def stats(self, dataset: str | None = None) -> Stats:
        """Counts over all datasets, or one. Proposals count for the content they answered."""
        ds = self._scope(dataset)
        only = "" if ds is None else " AND dataset = :ds"
        row = self._one(
            f"SELECT (SELECT count(*) FROM clusters WHERE 1{only}),"
            f" (SELECT count(*) FROM proposals p WHERE {CURRENT}{only}),"
            f" (SELECT count(*) FROM proposals p WHERE verdict IS NULL AND {CURRENT}{only}),"
            f" (SELECT count(*) FROM decisions WHERE 1{only}),"
            f" (SELECT count(*) FROM clusters WHERE n_reviews > 0{only})",
            {"ds": ds},
        )
        reviewers = tuple(
            r[0] for r in self._all(f"SELECT DISTINCT reviewer FROM decisions WHERE 1{only} ORDER BY reviewer", {"ds": ds})
        )
        return Stats(row[0], row[1], row[2], row[3], row[4], reviewers)

    EXPORT_COLUMNS = (
        "dataset", "cluster_id", "label", "label_source", "reviewers", "n_reviews", "decided_at",
        "model_verdict", "model_reason", "judge", "prompt_version", "agrees", "note",
    )

    def export_rows(
        self, include_unreviewed: bool = False, prefer_version: str | None = None, dataset: str | None = None
    ) -> list[tuple[Any, ...]]:
        """One tuple per cluster in `EXPORT_COLUMNS` order, by dataset then natural id order, in one query.

        All datasets unless `dataset` names one. Only proposals about the current content count.

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
                    {"pv": prefer_version, "unrev": int(include_unreviewed), "ds": self._scope(dataset)})
        return cur.fetchall()

    def export_json_lines(
        self, include_unreviewed: bool = False, prefer_version: str | None = None, dataset: str | None = None
    ) -> list[str]:
        """The `export_rows` rows as JSON object texts (keys `EXPORT_COLUMNS`), built by SQLite.

        For the JSONL export (and a pyarrow JSON parse for CSV / Parquet): SQLite's C JSON
        encoder writes the lines, so no Python object is made per value.
        """
        pairs = ", ".join(f"'{name}', {expr}" for name, expr in zip(self.EXPORT_COLUMNS, self._EXPORT_JSON_VALUES))
        cur = self.conn.cursor()
        cur.row_factory = None
        cur.execute(self._EXPORT_WITH + f" SELECT json_object({pairs})" + self._EXPORT_FROM,
                    {"pv": prefer_version, "unrev": int(include_unreviewed), "ds": self._scope(dataset)})
        return [row[0] for row in cur.fetchall()]

    # One GROUP BY per table (each walks its (cluster_id, ...) index in order); bare
    # columns next to max() come from the row holding the max, as SQLite documents:
    # the latest standing label, and the preferred-then-latest parsed proposal.
    _EXPORT_WITH = (
        "WITH lab AS (SELECT dataset, cluster_id, verdict, decided_at, max(decision_id) AS last_id,"
        " json_group_array(reviewer) AS reviewers, count(*) AS n_reviews,"
        " group_concat(note, char(10)) FILTER (WHERE note != '') AS notes FROM labels"
        " WHERE :ds IS NULL OR dataset = :ds GROUP BY dataset, cluster_id),"
        " prop AS (SELECT dataset, cluster_id, verdict, reason, judge, prompt_version,"
        " max(coalesce(prompt_version = :pv, 0) * 1099511627776 + id) AS rank_key"
        f" FROM proposals p WHERE verdict IS NOT NULL AND (:ds IS NULL OR dataset = :ds) AND {CURRENT}"
        " GROUP BY dataset, cluster_id)"
    )
    _EXPORT_VALUES = (
        "c.dataset", "c.id", "coalesce(lab.verdict, prop.verdict)",
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
        " FROM clusters c LEFT JOIN lab ON lab.dataset = c.dataset AND lab.cluster_id = c.id"
        " LEFT JOIN prop ON prop.dataset = c.dataset AND prop.cluster_id = c.id"
        " WHERE (:ds IS NULL OR c.dataset = :ds) AND (lab.verdict IS NOT NULL OR (:unrev AND prop.verdict IS NOT NULL))"
        " ORDER BY c.dataset, c.nkey"
    )

