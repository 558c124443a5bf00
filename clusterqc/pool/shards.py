"""A DataComp pool as it is downloaded: a folder of `<stem>.parquet` + `<stem>.npz` shards.

Why it looks the way it does:
- DataComp's metadata download is flat: each shard is a Parquet file (uid, url, text, sizes,
  CLIP scores, face boxes, sha256) and a same-stem `.npz` whose float16 arrays `l14_img,
  l14_txt, b32_img, b32_txt` hold one CLIP embedding per Parquet row, in order.
- The folder may be a local path or any pyarrow filesystem URI (`s3://bucket/pool`,
  `gs://...`, `file:///...`), so the same code reads a pool on shared or object storage and the
  filesystem object travels to Ray workers (pyarrow filesystems pickle).
- Every shard is checked before any work starts, from metadata only: the Parquet footer's row
  count and schema, and each needed array's `.npy` header inside the npz (a few hundred
  bytes, even when the npz is compressed). A missing npz, a row-count mismatch or another
  dimension is one error naming the shard, raised before anything is computed or written.
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from clusterqc.clustering import ClusteringError

ARRAYS = ("l14_txt", "l14_img", "b32_txt", "b32_img")
SCORE_COLUMNS = ("clip_l14_similarity_score", "clip_b32_similarity_score")
TEXT_COLUMNS = ("url", "text")
UID_COLUMN = "uid"


@dataclass(frozen=True)
class Embedding:
    """Which npz arrays make a sample's vector: one name, or several joined with `+` (concatenated)."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> "Embedding":
        parts = tuple(p.strip() for p in spec.split("+"))
        bad = [p for p in parts if p not in ARRAYS]
        if bad or not parts:
            raise ClusteringError(
                "--embedding", spec, f"unknown array {bad[0]!r}; choose from {', '.join(ARRAYS)}, or two joined with +"
            )
        if len(set(parts)) != len(parts):
            raise ClusteringError("--embedding", spec, "an array is named twice")
        return cls(parts)

    def __str__(self) -> str:
        return "+".join(self.parts)


@dataclass(frozen=True)
class Shard:
    """One checked shard: where its two files are, how many rows, which score columns it has."""

    index: int  # position in the pool (shards sorted by name)
    stem: str
    parquet: str  # path inside `filesystem`
    npz: str
    rows: int
    offset: int  # global row number of the shard's first row (ties in closest/furthest)
    scores: tuple[str, ...]  # SCORE_COLUMNS present in this shard
    text_columns: tuple[str, ...]  # TEXT_COLUMNS present in this shard

    def fail(self, where: str, why: str) -> ClusteringError:
        return ClusteringError(f"shard {self.stem} ({self.parquet})", where, why)


@dataclass(frozen=True)
class Pool:
    """The checked pool: its filesystem, shards in order, and the embedding's dimension."""

    root: str
    filesystem: Any  # pyarrow.fs.FileSystem
    shards: tuple[Shard, ...]
    embedding: Embedding
    dim: int
    local_root: str | None  # the folder on this machine's disk, when it is local

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def scores(self) -> tuple[str, ...]:
        """Score columns any shard has (the others get nulls), in SCORE_COLUMNS order."""
        have = {c for s in self.shards for c in s.scores}
        return tuple(c for c in SCORE_COLUMNS if c in have)


def is_pool(path: str) -> bool:
    """True for a folder or a filesystem URI: those are pools; a plain file is single-file input."""
    if "://" in path:
        return True
    import os

    return os.path.isdir(path)


def _filesystem(root: str) -> tuple[Any, str, str | None]:
    """(filesystem, path inside it, local folder or None) for a local path or a URI."""
    import os

    if "://" not in root:
        local = os.path.abspath(root)
        return pafs.LocalFileSystem(), local, local
    try:
        fs, path = pafs.FileSystem.from_uri(root)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise ClusteringError(root, "", f"cannot open this pool location: {exc}") from None
    local = path if isinstance(fs, pafs.LocalFileSystem) else None
    return fs, path.rstrip("/") or "/", local


def npy_headers(fs: Any, path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{array name: (shape, dtype)} of an npz, read from each member's .npy header only."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with fs.open_input_file(path) as raw, zipfile.ZipFile(raw) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            with zf.open(name) as member:
                shape, dtype = _npy_header(member)
            out[name[: -len(".npy")]] = (tuple(shape), dtype)
    return out


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an open .npy stream, reading only its header."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:  # 3.0 (utf-8 field names) has no public reader
        shape, _, dtype = np.lib.format._read_array_header(member, version)  # noqa: SLF001
    return tuple(shape), dtype


def read_arrays(fs: Any, path: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """The named arrays of an npz (decompressed one at a time; nothing else is read)."""
    out = []
    with fs.open_input_file(path) as raw, zipfile.ZipFile(raw) as zf:
        for name in names:
            with zf.open(f"{name}.npy") as member:
                out.append(np.lib.format.read_array(member, allow_pickle=False))
    return out


def open_pool(root: str, embedding: Embedding) -> Pool:
    """List and check every shard (metadata only); ClusteringError names the first bad shard."""
    fs, base, local = _filesystem(root)
    try:
        info = fs.get_file_info(base)
        if info.type != pafs.FileType.Directory:
            raise ClusteringError(root, "", "not a folder of DataComp shards (.parquet + .npz)")
        entries = fs.get_file_info(pafs.FileSelector(base, recursive=False))
    except (pa.ArrowException, OSError) as exc:
        raise ClusteringError(root, "", f"cannot list the pool: {exc}") from None
    files = {posixpath.basename(e.path): e.path for e in entries if e.type == pafs.FileType.File}
    stems = sorted(n[: -len(".parquet")] for n in files if n.endswith(".parquet") and not n.startswith("."))
    orphans = sorted(n for n in files if n.endswith(".npz") and n[: -len(".npz")] not in stems)
    if orphans:
        raise ClusteringError(files[orphans[0]], "", f"shard {orphans[0][:-4]}: an .npz without its .parquet")
    if not stems:
        raise ClusteringError(root, "", "no .parquet shards in this folder")
    shards: list[Shard] = []
    dim: int | None = None
    first: Shard | None = None
    offset = 0
    for i, stem in enumerate(stems):
        shard, shard_dim = _check_shard(fs, i, stem, files, embedding, offset)
        if dim is None:
            dim, first = shard_dim, shard
        elif shard_dim != dim:
            raise shard.fail(
                "npz", f"{embedding} has dimension {shard_dim}, but shard {first.stem} has {dim}"  # type: ignore[union-attr]
            )
        shards.append(shard)
        offset += shard.rows
    if offset == 0:
        raise ClusteringError(root, "", "every shard is empty")
    return Pool(root, fs, tuple(shards), embedding, int(dim or 0), local)


def _check_shard(
    fs: Any, index: int, stem: str, files: dict[str, str], embedding: Embedding, offset: int
) -> tuple[Shard, int]:
    parquet = files[f"{stem}.parquet"]
    where = f"shard {stem} ({parquet})"
    try:
        with fs.open_input_file(parquet) as fh:
            meta = pq.ParquetFile(fh).metadata
            names = meta.schema.to_arrow_schema().names
            rows = meta.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise ClusteringError(where, "parquet", f"not a readable Parquet file: {exc}") from None
    if UID_COLUMN not in names:
        raise ClusteringError(where, "parquet", f"no {UID_COLUMN!r} column (columns: {', '.join(names)})")
    npz = files.get(f"{stem}.npz")
    if npz is None:
        raise ClusteringError(where, "npz", f"missing: no {stem}.npz beside the parquet")
    try:
        headers = npy_headers(fs, npz)
    except (zipfile.BadZipFile, ValueError, OSError, pa.ArrowException) as exc:
        raise ClusteringError(where, "npz", f"not a readable .npz ({npz}): {exc}") from None
    dim = 0
    for part in embedding.parts:
        if part not in headers:
            raise ClusteringError(where, "npz", f"no array {part!r} (it has {', '.join(headers) or 'none'})")
        shape, dtype = headers[part]
        if len(shape) != 2:
            raise ClusteringError(where, f"npz {part}", f"expected rows x dimension, got shape {shape}")
        if shape[0] != rows:
            raise ClusteringError(where, f"npz {part}", f"{shape[0]} rows, but the parquet has {rows}")
        if dtype.kind != "f":
            raise ClusteringError(where, f"npz {part}", f"expected floats, got {dtype}")
        dim += shape[1]
    shard = Shard(
        index=index,
        stem=stem,
        parquet=parquet,
        npz=npz,
        rows=rows,
        offset=offset,
        scores=tuple(c for c in SCORE_COLUMNS if c in names),
        text_columns=tuple(c for c in TEXT_COLUMNS if c in names),
    )
    return shard, dim
