"""Datasets: one clustering each (a cluster file, or one `clusterqc cluster` run).

A cluster is (dataset, cluster id), so two clusterings of one pool, both naming their clusters
`Cluster_0 ... Cluster_N`, live side by side in one file. Every store method that works on one
cluster takes `dataset=None`, meaning "the only dataset" (and an error naming them when there
are several); listings, counts and exports take it as "all datasets". Callers written before
datasets existed therefore keep working on a database that holds one.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from typing import Any

from clusterqc.store.connection import Connection, utcnow
from clusterqc.store.schema import DEFAULT_DATASET

MAX_NAME = 100
_NAME_OK = re.compile(r"[A-Za-z0-9._-]+")


class DatasetError(ValueError):
    """A dataset name that is invalid, unknown, or needed but not given; one line for the user."""


def check_dataset_name(name: str) -> str:
    """The name as given if it is usable (letters, digits, '-', '_', '.'; 1-100 characters)."""
    if not isinstance(name, str) or not name:
        raise DatasetError("dataset name is empty")
    if len(name) > MAX_NAME:
        raise DatasetError(f"dataset name is {len(name)} characters long (at most {MAX_NAME})")
    if not _NAME_OK.fullmatch(name):
        bad = next(ch for ch in name if not _NAME_OK.fullmatch(ch))
        raise DatasetError(f"dataset name {name!r} has {bad!r}: use only letters, digits, '-', '_' and '.'")
    return name


def name_from_stem(stem: str) -> str:
    """A file stem as a dataset name: other characters become '-' (`my pool.json` -> `my-pool`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")[:MAX_NAME]
    return name or DEFAULT_DATASET


def _listed(names: list[str]) -> str:
    return ", ".join(names) if names else "(none yet)"


class DatasetTable(Connection):
    """The `datasets` table, and how a `dataset=` argument becomes a name."""

    def dataset_names(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM datasets ORDER BY name")]

    def _dataset(self, dataset: str | None) -> str:
        """The dataset a one-cluster operation means: the given one (it must exist), else the only one.

        An empty database answers `default`, so lookups find nothing rather than fail.
        """
        names = self.dataset_names()
        if dataset is not None:
            if dataset not in names:
                raise DatasetError(f"unknown dataset {dataset!r}; the database has: {_listed(names)}")
            return dataset
        if len(names) > 1:
            raise DatasetError(f"the database holds {len(names)} datasets ({_listed(names)}); choose one with --dataset")
        return names[0] if names else DEFAULT_DATASET

    def _scope(self, dataset: str | None) -> str | None:
        """For listings and counts: None (all datasets) stays None; a name must exist."""
        return None if dataset is None else self._dataset(dataset)

    def check_dataset(self, dataset: str | None) -> str | None:
        """`_scope` for callers outside the store (the CLI's --dataset, the app's picker)."""
        return self._scope(dataset)

    def resolve_dataset(self, dataset: str | None = None) -> str:
        """`_dataset` for callers outside the store: the one dataset a command works on."""
        return self._dataset(dataset)

    @staticmethod
    def _note_datasets(conn: sqlite3.Connection, sources: dict[str, Iterable[str | None]]) -> None:
        """Create the datasets an import writes to and add its files to their sources."""
        now = utcnow()
        for name, files in sources.items():
            conn.execute("INSERT OR IGNORE INTO datasets (name, created_at) VALUES (?, ?)", (name, now))
            known = set(json.loads(conn.execute("SELECT sources FROM datasets WHERE name = ?", (name,)).fetchone()[0]))
            merged = sorted(known | {f for f in files if f})
            if merged != sorted(known):
                conn.execute("UPDATE datasets SET sources = ? WHERE name = ?", (json.dumps(merged), name))

    def datasets(self) -> list[dict[str, Any]]:
        """Each dataset with what `clusterqc datasets` lists: clusters, proposals, reviewed
        clusters, decisions, source files and when it was created."""
        rows = self._all(
            "SELECT d.name, d.created_at, d.sources,"
            " (SELECT count(*) FROM clusters c WHERE c.dataset = d.name) AS clusters,"
            " (SELECT count(*) FROM proposals p WHERE p.dataset = d.name) AS proposals,"
            " (SELECT count(*) FROM clusters c WHERE c.dataset = d.name AND c.n_reviews > 0) AS reviewed,"
            " (SELECT count(*) FROM decisions x WHERE x.dataset = d.name) AS decisions"
            " FROM datasets d ORDER BY d.name"
        )
        return [{**dict(r), "sources": json.loads(r["sources"])} for r in rows]
