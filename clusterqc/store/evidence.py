"""Pool evidence: the pool profile read from an assignments file, and the subset so far.

The profile (pool size, CLIP-score quantiles, DataComp's top-30% cut, the file's hash) is one
JSON value in `settings`; how many samples of each cluster that cut keeps is `pool_clusters`,
so the sidebar sets the verdicts beside the CLIP-30% baseline with one SUM over the labels.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from clusterqc.store.datasets import DatasetTable

POOL_PROFILE_SETTING = "pool_profile"  # one setting per dataset: "pool_profile:<dataset>"

# A cluster's latest standing label (the same rule as the export: the highest decision id).
_LATEST_LABEL = (
    "SELECT dataset, cluster_id, verdict, max(decision_id) FROM labels WHERE dataset = :ds GROUP BY cluster_id"
)


def _profile_key(dataset: str) -> str:
    return f"{POOL_PROFILE_SETTING}:{dataset}"


class EvidenceQueries(DatasetTable):
    """The `pool_clusters` table, the per-dataset pool profile settings and the subset-so-far sums.

    A pool (an assignments file) is the pool of one clustering, so everything here is one
    dataset's; `dataset=None` is the only one.
    """

    def save_pool_profile(
        self, profile: dict[str, Any], clusters: Iterable[tuple[str, int, int]], dataset: str | None = None
    ) -> None:
        """Replace the dataset's pool profile and its per-cluster rows (cluster id, samples, above the cut)."""
        ds = self._dataset(dataset)
        text = json.dumps(profile, ensure_ascii=False, allow_nan=False, sort_keys=True)
        rows = [(ds, *r) for r in clusters]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM pool_clusters WHERE dataset = ?", (ds,))
            conn.executemany(
                "INSERT INTO pool_clusters (dataset, cluster_id, n_samples, n_above_cut) VALUES (?, ?, ?, ?)", rows
            )
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_profile_key(ds), text),
            )

        self._write(write)

    def pool_profile(self, dataset: str | None = None) -> dict[str, Any] | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (_profile_key(self._dataset(dataset)),))
        return json.loads(row[0]) if row else None

    def pool_cluster(self, cluster_id: str, dataset: str | None = None) -> tuple[int, int] | None:
        """(samples, samples above the pool's CLIP-30% cut) of one cluster, from the profile."""
        row = self._one(
            "SELECT n_samples, n_above_cut FROM pool_clusters WHERE dataset = ? AND cluster_id = ?",
            (self._dataset(dataset), cluster_id),
        )
        return (row[0], row[1]) if row else None

    def pool_from_clusters(self, dataset: str | None = None) -> dict[str, Any]:
        """What the clusters' own evidence says of the pool: sizes summed, size-weighted CLIP mean."""
        row = self._one(
            "SELECT count(*), count(size), coalesce(sum(size), 0),"
            " sum(size * (stats ->> '$.clip_l14_mean')) / sum(CASE WHEN stats ->> '$.clip_l14_mean'"
            "  IS NOT NULL THEN size END),"
            " count(stats) FROM clusters WHERE dataset = ?",
            (self._dataset(dataset),),
        )
        return {"clusters": row[0], "sized": row[1], "samples": row[2], "clip_l14_mean": row[3], "with_stats": row[4]}

    def subset_so_far(self, keep: Iterable[str] = ("Acceptable",), dataset: str | None = None) -> dict[str, int]:
        """Clusters whose latest standing label is one of `keep`, their samples, and of those
        the samples above the pool's CLIP cut (0 without a profile).

        A cluster's samples are the assignments' count when a profile was read, else its size.
        """
        wanted = json.dumps(sorted(set(keep)))
        row = self._one(
            f"WITH lab AS ({_LATEST_LABEL})"
            " SELECT count(*), coalesce(sum(coalesce(p.n_samples, c.size, 0)), 0),"
            " coalesce(sum(p.n_above_cut), 0), count(p.cluster_id)"
            " FROM lab JOIN clusters c ON c.dataset = lab.dataset AND c.id = lab.cluster_id"
            " LEFT JOIN pool_clusters p ON p.dataset = c.dataset AND p.cluster_id = c.id"
            " WHERE lab.verdict IN (SELECT value FROM json_each(:keep))",
            {"keep": wanted, "ds": self._dataset(dataset)},
        )
        return {"clusters": row[0], "samples": row[1], "above_cut": row[2], "profiled": row[3]}
