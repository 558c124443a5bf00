"""The connection and its transactions: the plumbing every table module writes through.

Why it looks the way it does:
- WAL mode and a busy timeout let several reviewers and a batch runner share one file.
- A file is checked before anything is written to it (`check_database_file`): a file that is
  not SQLite, another application's database, or one written by a newer clusterqc (a
  migration this version does not know) is refused with one line and left byte-identical.
  Only then come the PRAGMAs that write (page_size, journal_mode=WAL) and the migrations.
- Every write runs in `BEGIN IMMEDIATE`, so two writers never deadlock on a lock upgrade,
  and a write that still finds the database busy is retried a bounded number of times
  instead of surfacing "database is locked" to a reviewer.
"""

from __future__ import annotations

import os
import re
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
# SQLite's extended error names -> what a person can do about it (sqlite3 errors carry the name).
_PROBLEMS = {
    "SQLITE_FULL": "the disk is full (database or disk is full); free some space and run again",
    "SQLITE_CORRUPT": "the database file is damaged ({msg}); restore it from a backup",
    "SQLITE_NOTADB": "not a SQLite database ({msg})",
    "SQLITE_READONLY": "cannot write to it: the file or its folder is read-only ({msg})",
    "SQLITE_CANTOPEN": "cannot open it: the folder is missing or not accessible ({msg})",
    "SQLITE_PERM": "permission denied ({msg})",
    "SQLITE_IOERR": "input/output error ({msg})",
    "SQLITE_BUSY": "the database is busy: another program holds a lock ({msg})",
    "SQLITE_LOCKED": "the database is locked by another program ({msg})",
}


class UnusableDatabase(sqlite3.DatabaseError):
    """A database file this version must not open or cannot use; the message names the file.

    A subclass of sqlite3.DatabaseError so every caller that already reports SQLite errors as
    one line (the app's pages) reports this one too.
    """


def describe_error(path: str | os.PathLike[str], exc: BaseException) -> str:
    """One line for a failed database operation: the file, then the problem in plain words."""
    if isinstance(exc, UnusableDatabase):
        return str(exc)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        msg = exc.strerror
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")):
        readonly = _read_only_reason(Path(path))
        if readonly:
            return f"{path}: {readonly} ({msg})"
    for code, text in _PROBLEMS.items():
        if name == code or name.startswith(code + "_"):
            return f"{path}: {text.format(msg=msg)}"
    return f"{path}: {msg}"


def _read_only_reason(path: Path) -> str | None:
    """Why SQLite cannot write here, when a permission says so: the file, or its folder (which
    must take the -wal and -shm files SQLite keeps beside the database)."""
    folder = path.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to it: its folder {folder} is read-only (SQLite keeps -wal/-shm files beside the database)"
    if path.exists() and not os.access(path, os.W_OK):
        return "cannot write to it: the file is read-only"
    return None


def _known_tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")]


def check_database_path(path: Path) -> None:
    """Before connecting: the folder exists and the path is not a folder.

    The bytes are not read here with open(): closing another descriptor of a database file
    drops the POSIX locks every SQLite connection of this process holds on it (see SQLite's
    "How To Corrupt An SQLite Database File", section 2.2), so the app's other sessions would
    lose theirs. SQLite itself reads the header in `check_database_file`.
    """
    if not path.parent.is_dir():
        raise UnusableDatabase(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise UnusableDatabase(f"{path}: is a folder, not a database file")


def check_database_file(path: Path, conn: sqlite3.Connection) -> None:
    """Refuse, before anything is written, a file that is not a clusterqc database of this version.

    Fine: a missing or empty file (a new database), an empty SQLite file, and a clusterqc
    database whose applied migrations this version all knows (pending ones are applied later).
    Refused: bytes that are not SQLite, another application's tables, and a migration this version does not know (a newer
    clusterqc wrote it: opening it here could undo what the newer one relies on).
    Only reads: `sqlite_master` (SQLite checks the header) and the migrations table.
    """
    try:
        names = _known_tables(conn)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise UnusableDatabase(f"{path}: not a SQLite database ({exc})") from None
        raise
    if not names:
        return
    table = migrations.migrations_table
    applied = (
        [r[0] for r in conn.execute(f"SELECT name FROM [{table}] WHERE migration_set = ?", (migrations.name,))]
        if table in names
        else []
    )
    if not applied:
        shown = _table_names([n for n in names if n != table])
        raise UnusableDatabase(
            f"{path}: not a clusterqc database (it holds another application's tables: {_clip(shown)});"
            " choose another file"
        )
    known = {m.name for m in migrations._migrations}
    unknown = [n for n in applied if n not in known]
    if unknown:
        raise UnusableDatabase(
            f"{path}: written by a newer clusterqc (migration {_table_names(unknown)} unknown to this version);"
            " upgrade clusterqc to open it"
        )


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")


def _table_names(names: list[str]) -> str:
    """A few table or migration names of a file for the message, only the plain ones.

    The names come from a file we know nothing about and end up on a page (st.error renders
    Markdown) and in a terminal: a name with other characters is counted, never shown.
    """
    plain = [n for n in names if _PLAIN_NAME.fullmatch(n)]
    shown = ", ".join(plain[:5])
    rest = len(names) - min(len(plain), 5)
    return shown + (f"{', ' if shown else ''}{rest} more" if rest else "")


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


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
        check_database_path(self.path)
        self.conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            check_database_file(self.path, self.conn)
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    def _prepare(self) -> None:
        """The writing part of opening: page size (new files), WAL, pending migrations."""
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

