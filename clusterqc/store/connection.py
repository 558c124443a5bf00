"""The connection and its transactions: the plumbing every table module writes through.

Why it looks the way it does:
- WAL mode and a busy timeout let several reviewers and a batch runner share one file.
- Every write runs in `BEGIN IMMEDIATE`, so two writers never deadlock on a lock upgrade,
  and a write that still finds the database busy is retried a bounded number of times
  instead of surfacing "database is locked" to a reviewer.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from clusterqc.store.schema import migrations

DEFAULT_DB = "clusterqc.db"
ENV_DB = "CLUSTERQC_DB"
BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 8
PAGE_SIZE = 16_384  # bytes, for new database files


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """`--db`, else $CLUSTERQC_DB, else ./clusterqc.db: the order every entry point uses."""
    return Path(db or os.environ.get(ENV_DB) or DEFAULT_DB)


def utcnow() -> str:
    """ISO-8601 UTC with microseconds: sorts as text and keeps decisions in order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Connection:
    """One SQLite database file and its write discipline; the table modules build on it."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = resolve_db_path(path)
        self.conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # Only takes effect when this creates the file (before WAL is on); an existing database
        # keeps its page size. 16 KiB pages halve the pages an import writes (rows are ~0.8 KiB).
        self.conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        self._retry(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
        self.db = sqlite_utils.Database(self.conn)
        self._retry(lambda: migrations.apply(self.db))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _retry(fn: Any) -> Any:
        """Run `fn`, retrying a bounded number of times if SQLite still reports a lock."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        return None  # pragma: no cover

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE (the write lock up front)."""
        self._retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _write(self, fn: Any) -> Any:
        """Run `fn(conn)` in one write transaction; the whole transaction is retried if busy."""

        def attempt() -> Any:
            with self._tx() as conn:
                return fn(conn)

        return self._retry(attempt)

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def integrity_check(self) -> str:
        return self._one("PRAGMA integrity_check")[0]

    def schema_version(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    def backup(self, out: str | os.PathLike[str]) -> None:
        """A consistent snapshot while others write: SQLite's online backup API."""
        target = sqlite3.connect(out)
        try:
            self.conn.backup(target)
        finally:
            target.close()

