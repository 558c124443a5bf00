"""The SQLite store: the only package that speaks SQL, one module per concept.

- `connection`: the file, WAL, transactions (`BEGIN IMMEDIATE`, bounded retry).
- `schema`: sqlite-utils migrations.
- `datasets`: dataset names, and what `dataset=None` means (the only one / all of them).
- `clusters`: import by content hash, lookup, iteration, caption search SQL.
- `proposals`: judge answers and failed requests.
- `decisions`: the append-only decision log and the labels derived from it.
- `queue`: the review queue and holds.
- `curation`: prompt versions, settings, few-shot examples, guidelines, rechecks.
- `exports`: counts and the one-query label export.
- `evidence`: the pool profile from an assignments file and the subset-so-far sums.

`Store` is the one object the rest of the code opens; each module contributes the methods of
its tables (the same split as sqlite-utils' per-table objects, kept as one object so callers
hold one connection and one transaction discipline).
"""

from __future__ import annotations

from clusterqc.store.clusters import (
    BULK_MIN_ROWS,
    CLUSTER_TEXT_SQL,
    ClusterTable,
    ConflictError,
    ImportResult,
    _cluster_row,
    natural_key,
)
from clusterqc.store.connection import DEFAULT_DB, ENV_DB, Connection, resolve_db_path, utcnow
from clusterqc.store.curation import CurationTables
from clusterqc.store.datasets import DatasetError, DatasetTable, check_dataset_name, name_from_stem
from clusterqc.store.decisions import DecisionTable
from clusterqc.store.evidence import POOL_PROFILE_SETTING, EvidenceQueries
from clusterqc.store.exports import ExportQueries
from clusterqc.store.proposals import ProposalTable
from clusterqc.store.queue import HOLD_SECONDS, QUEUE_FILTERS, QUEUE_SORTS, RECHECK_FILTER, ReviewQueue
from clusterqc.store.schema import DEFAULT_DATASET, migrations


class Store(
    ClusterTable, ProposalTable, DecisionTable, ReviewQueue, CurationTables, ExportQueries, EvidenceQueries,
    DatasetTable, Connection
):
    """One SQLite database file. Cheap to open; open one per process, thread or session."""

    def __enter__(self) -> "Store":
        return self


__all__ = [
    "BULK_MIN_ROWS",
    "CLUSTER_TEXT_SQL",
    "DEFAULT_DATASET",
    "DEFAULT_DB",
    "DatasetError",
    "ENV_DB",
    "HOLD_SECONDS",
    "POOL_PROFILE_SETTING",
    "QUEUE_FILTERS",
    "QUEUE_SORTS",
    "RECHECK_FILTER",
    "ConflictError",
    "ImportResult",
    "Store",
    "_cluster_row",
    "check_dataset_name",
    "migrations",
    "name_from_stem",
    "natural_key",
    "resolve_db_path",
    "utcnow",
]
