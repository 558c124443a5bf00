"""Real file-system conditions for tests: a full disk, a read-only folder, a read-only file.

As root (CI containers, this machine) permissions do not stop writes, so the conditions are
made with mounts: a tiny tmpfs fills up for real (ENOSPC / SQLITE_FULL), a tmpfs remounted
read-only refuses every write (EROFS), and a read-only bind mount of one file makes just that
file unwritable. Without root, a full disk cannot be made and those tests are skipped; the
read-only cases fall back to chmod, which a normal user cannot write past.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


@contextmanager
def tiny_tmpfs(folder: Path, size: str = "512k") -> Iterator[Path]:
    """`folder` as a tmpfs of `size` bytes (skips the test when mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        pytest.skip("a full disk needs root to mount a tiny tmpfs")
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield folder
    finally:
        _umount(folder)


def fill(folder: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """Make `folder` (already filled with what the test needs) read-only for its duration."""
    if IS_ROOT:
        staged = folder.with_name(folder.name + ".staged")
        folder.rename(staged)
        folder.mkdir()
        try:
            _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder))
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        try:
            for item in staged.iterdir():
                (folder / item.name).write_bytes(item.read_bytes())
            _mount("-o", "remount,ro", str(folder))
            yield folder
        finally:
            _umount(folder)
            folder.rmdir()
            staged.rename(folder)
    else:
        mode = folder.stat().st_mode
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield folder
        finally:
            folder.chmod(mode)


@contextmanager
def read_only_file(path: Path) -> Iterator[Path]:
    """Make one file read-only (its folder stays writable)."""
    if IS_ROOT:
        try:
            _mount("--bind", str(path), str(path))
            _mount("-o", "remount,bind,ro", str(path))
        except (OSError, subprocess.CalledProcessError) as exc:
            _umount(path)
            pytest.skip(f"cannot bind-mount here: {exc}")
        try:
            yield path
        finally:
            _umount(path)
    else:
        mode = path.stat().st_mode
        path.chmod(stat.S_IRUSR)
        try:
            yield path
        finally:
            path.chmod(mode)
