"""Where a command may write: never over the database, one of its own inputs, or another of its outputs.

Why a module of its own: every command that writes a file (export, export-uids, cluster, backup)
must refuse the same mistakes, and comparing paths by their text is not enough. `./a.db`,
`a.db`, a symlink to it and a hard link to it are all the same file, so paths are compared both
resolved and, when the file exists, by (device, inode). SQLite's side files (`-wal`, `-shm`,
`-journal`) count as the database: writing over one corrupts the database as surely.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class OutputError(ValueError):
    """An output path that would destroy something the command needs; the message names both."""


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """The resolved path, and (device, inode) when the file exists (catches hard links)."""
    resolved = Path(os.path.realpath(path))
    try:
        st = resolved.stat()
        return str(resolved), (st.st_dev, st.st_ino)
    except OSError:
        return str(resolved), None


def _same(a: Path, b: Path) -> bool:
    path_a, inode_a = _identity(a)
    path_b, inode_b = _identity(b)
    return path_a == path_b or (inode_a is not None and inode_a == inode_b)


def database_files(db: str | os.PathLike[str]) -> list[Path]:
    """The database and the side files SQLite keeps beside it."""
    base = Path(db)
    return [base] + [Path(f"{base}{suffix}") for suffix in SQLITE_SIDE_FILES]


def check_outputs(
    outputs: Iterable[tuple[str, str | os.PathLike[str] | None]],
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
    db: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse the run before anything is written when an output is the database, an input, or another output.

    `outputs` and `inputs` are (what, path) pairs, e.g. ("--out", "labels.csv"); a None path is
    skipped, so optional outputs can be passed as they are. The message names the option and the
    file it would have overwritten.
    """
    outs = [(what, Path(p)) for what, p in outputs if p is not None]
    ins = [(what, Path(p)) for what, p in inputs if p is not None]
    for i, (what, out) in enumerate(outs):
        if db is not None:
            for side in database_files(db):
                if _same(out, side):
                    raise OutputError(f"{what} {out}: that is the database ({side}); choose another file")
        for in_what, source in ins:
            if _same(out, source):
                raise OutputError(f"{what} {out}: that is the input {in_what} {source}; choose another file")
        for other_what, other in outs[i + 1 :]:
            if _same(out, other):
                raise OutputError(f"{what} {out} and {other_what} {other} are the same file; choose two files")


# --------------------------------------------------------------------------- temporary files

PARTIAL_SIDE_FILES = ("-wal", "-shm", "-journal")


def temp_prefix(target: str | os.PathLike[str]) -> str:
    """The prefix of a hidden temporary file beside `target`, carrying this process's id.

    The pid lets a later run tell a leftover of a killed run (its process is gone) from the
    file of a run still writing (`clean_stale_partials` leaves those alone).
    """
    return f".{Path(target).name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has not written it yet: a killed run's, its pid reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def clean_stale_partials(target: str | os.PathLike[str], suffix: str) -> list[Path]:
    """Remove temporary files of `target` (`.NAME.<pid>.*SUFFIX` and their SQLite side files)
    left by runs that were killed; returns what was removed, for the caller to say so.

    Why: a `kill -9` skips every `finally`, so each killed backup left a full-size hidden copy
    plus its -wal/-shm; the next run of the same output is the one place that can notice.
    A name without a pid (written by an older clusterqc) counts as stale.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}."
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        base = next((name[: -len(s)] for s in PARTIAL_SIDE_FILES if name.endswith(suffix + s)), name)
        if not (base.startswith(prefix) and base.endswith(suffix)) or not entry.is_file(follow_symlinks=False):
            continue
        middle = base[len(prefix) : -len(suffix)]
        pid_text = middle.split(".", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        path = folder / name
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return sorted(removed)


def creation_mode() -> int:
    """The mode a new file gets under the process's umask (0o666 & ~umask).

    mkstemp creates files 0600 whatever the umask; outputs are shared files (a labels CSV, a
    uid subset, a backup), so they get the mode any other program's new file would.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
