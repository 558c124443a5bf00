"""Clusters: import (all or nothing, by content hash), lookup and iteration.

Imported rows are built as tuples with one shared JSON encoder: at 100,000 clusters the per-row
Python work, not SQLite, is what an import costs (bench/RESULTS.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any

from clusterqc.model import Cluster, ClusterRecord, ClusterTexts, Sample
from clusterqc.store.connection import utcnow
from clusterqc.store.datasets import DatasetTable, check_dataset_name

IMPORT_CACHE_KIB = -512_000  # negative: KiB, so at most 500 MiB of page cache while importing
BULK_MIN_ROWS = 10_000  # an import at least this big (and >= the table) rebuilds indexes once


def natural_key(cluster_id: str) -> str:
    """`Cluster_2` before `Cluster_10`: numbers zero-padded so text order is natural order."""
    return _DIGITS.sub(_zero_pad, cluster_id)


_DIGITS = re.compile(r"\d+")


def _zero_pad(match: re.Match[str]) -> str:
    return match.group().zfill(12)


class ConflictError(ValueError):
    """Clusters whose id exists with other content; nothing was written."""

    def __init__(self, ids: Sequence[str]):
        self.ids = list(ids)
        shown = ", ".join(self.ids[:5]) + (f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else "")
        super().__init__(
            f"{len(self.ids)} cluster id(s) already exist with different content: {shown} "
            "(use --replace to overwrite them)"
        )


@dataclass(frozen=True)
class ImportResult:
    added: int
    unchanged: int
    replaced: int
    unlabelled: int = 0  # replaced clusters that had a label: their decisions were on the old content


def _cluster_from_row(row: sqlite3.Row | dict[str, Any]) -> Cluster:
    return Cluster(
        id=row["id"],
        closest=tuple(Sample.from_json(s) for s in json.loads(row["closest"])),
        furthest=tuple(Sample.from_json(s) for s in json.loads(row["furthest"])),
        size=row["size"],
        dataset=row["dataset"],
        stats=json.loads(row["stats"]) if row["stats"] else None,
    )



def _texts(samples_json: str) -> tuple[str, ...]:
    """The captions of a stored samples column (a sample is a JSON string, or an object with "text")."""
    return tuple(s if isinstance(s, str) else s["text"] for s in json.loads(samples_json))


# One encoder for every row: json.dumps builds a new one per call, which dominated imports.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for a str
_STATS_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False).encode
_text = attrgetter("text")
_STR = repeat(str)  # map(isinstance, items, _STR): a type check per item at C speed

# The columns an import writes, in the order `_cluster_values` gives them.
_ROW_COLUMNS = (
    "dataset", "id", "nkey", "closest", "furthest", "size", "source", "content_hash", "imported_at", "stats",
)
_HASH_AT = _ROW_COLUMNS.index("content_hash")
_KEY = slice(0, 2)  # (dataset, id)
_SOURCE_AT = _ROW_COLUMNS.index("source")


def _samples_json(samples: Sequence[str | Sample]) -> str:
    """Same text as json.dumps([s.to_json() ...], ensure_ascii=False), 10x cheaper.

    Bare captions (the luvdatacomp case; an importer's `ClusterRecord` keeps them as plain
    strings) are quoted with the json module's own C string encoder and joined with its default
    separator; anything else goes through the full encoder.
    """
    if all(map(isinstance, samples, _STR)):
        return "[" + ", ".join(map(_quote, samples)) + "]"
    if any(map(isinstance, samples, _STR)):  # a record mixing bare captions and Samples
        samples = [s if isinstance(s, Sample) else Sample(s) for s in samples]
    if all(s.uid is None and s.url is None and s.clip_score is None for s in samples):
        return "[" + ", ".join(map(_quote, map(_text, samples))) + "]"
    return _ENCODE([s.to_json() for s in samples])


def _cluster_values(
    cluster: Cluster | ClusterRecord, source: str | None, now: str, dataset: str | None = None
) -> tuple[Any, ...]:
    """One import row in `_ROW_COLUMNS` order: a tuple binds faster than a dict of names.

    The dataset is the cluster's own, else `dataset`; it is the cluster's namespace, not its
    content, so the hash leaves it out (the same file in two datasets has the same content).
    """
    closest = _samples_json(cluster.closest)
    furthest = _samples_json(cluster.furthest)
    stats = None if cluster.stats is None else _STATS_JSON(cluster.stats)
    # Byte for byte the payload Cluster.content_hash() hashes (sort_keys order: closest,
    # furthest, size, stats; sample keys clip_score/text/uid/url are already sorted), built from
    # the strings above instead of encoding every sample a second time. tests/test_ingest.py
    # checks equality. `stats` is in it only when the cluster has some (older hashes unchanged).
    payload = (
        f'{{"closest": {closest}, '
        f'"furthest": {furthest}, "size": {"null" if cluster.size is None else int(cluster.size)}'
        + ("}" if stats is None else f', "stats": {stats}}}')
    )
    return (
        cluster.dataset or dataset,
        cluster.id,
        natural_key(cluster.id),
        closest,
        furthest,
        cluster.size,
        source,
        hashlib.sha256(payload.encode("utf-8")).hexdigest(),
        now,
        stats,
    )


def _cluster_row(cluster: Cluster | ClusterRecord, source: str | None, now: str) -> dict[str, Any]:
    """The row an import writes, by column name."""
    return dict(zip(_ROW_COLUMNS, _cluster_values(cluster, source, now)))


# Every caption of cluster `c` as rows of `t`, closest first (a stored sample is a JSON string,
# or an object with "text" when it has a uid or url). Search and few-shot read captions here:
# the JSON columns are their only copy.
_SAMPLE_TEXTS = " UNION ALL ".join(
    f"SELECT CASE j.type WHEN 'text' THEN j.value ELSE j.value ->> '$.text' END AS t FROM json_each(c.{col}) j"
    for col in ("closest", "furthest")
)
# All captions of `c`, one per line (json_each walks each array in order; closest first).
CLUSTER_TEXT_SQL = f"(SELECT group_concat(t, char(10)) FROM ({_SAMPLE_TEXTS}))"
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # what json.dumps(ensure_ascii=False) escapes


def _search_sql(search: str) -> str:
    """WHERE fragment: some caption of `c` contains :search (a LIKE pattern, so ASCII case-insensitive).

    The exact test walks the samples with json_each; before it, a plain LIKE over the raw JSON
    columns throws out most clusters at text-scan speed. That prefilter never drops a match when
    the search holds nothing JSON escapes (a caption's match then appears verbatim in the JSON);
    otherwise it is left out.
    """
    exact = f" AND EXISTS (SELECT 1 FROM ({_SAMPLE_TEXTS}) WHERE t LIKE :search ESCAPE '\\')"
    if _JSON_ESCAPED.search(search):
        return exact
    return " AND (c.closest LIKE :search ESCAPE '\\' OR c.furthest LIKE :search ESCAPE '\\')" + exact



class ClusterTable(DatasetTable):
    """The `clusters` table (and the `datasets` rows an import creates)."""

    def import_clusters(
        self,
        clusters: Iterable[Cluster | ClusterRecord],
        source: str | None = None,
        replace: bool = False,
        sources: dict[Any, str] | None = None,
        dataset: str | None = None,
    ) -> ImportResult:
        """Write clusters all or nothing: identical ones are skipped, changed ones need `replace`.

        A cluster goes in its own dataset, else `dataset`, else the only one (`default` in an
        empty database). `sources` ((dataset, id) or id -> file) lets one all-or-nothing call
        record each cluster's own file when several files are imported together; `source` is
        the fallback. A replaced cluster's labels are dropped (its decisions and proposals stay
        in the log, tied to the content they were made on), so it is reviewed and proposed anew.
        """
        fallback = check_dataset_name(dataset) if dataset is not None else None
        if fallback is None:
            names = self.dataset_names()
            fallback = names[0] if len(names) == 1 else None
        now = utcnow()
        rows = [_cluster_values(c, self._source(c, sources, source, fallback), now, fallback) for c in clusters]
        if not rows:
            return ImportResult(0, 0, 0)
        if any(r[0] is None for r in rows):
            self._dataset(None)  # several datasets and none named: the error lists them
            rows = [r if r[0] is not None else ("default",) + r[1:] for r in rows]
        for name in {r[0] for r in rows}:
            check_dataset_name(name)

        def write(conn: sqlite3.Connection) -> ImportResult:
            before = conn.execute("SELECT count(*) FROM clusters").fetchone()[0]
            existing = self._existing_hashes(conn, [r[_KEY] for r in rows]) if before else {}
            new = [r for r in rows if r[_KEY] not in existing]
            changed = [r for r in rows if r[_KEY] in existing and existing[r[_KEY]] != r[_HASH_AT]]
            if changed and not replace:
                raise ConflictError([r[1] for r in changed])
            by_dataset: dict[str, set[str | None]] = {}
            for ds, src in {(r[0], r[_SOURCE_AT]) for r in rows}:
                by_dataset.setdefault(ds, set()).add(src)
            self._note_datasets(conn, by_dataset)
            # A big page cache for this transaction: the B-tree inserts of 100,000 rows otherwise
            # spill and re-read pages (3x slower). Restored below; per connection only.
            cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size = {IMPORT_CACHE_KIB}")
            try:
                self._insert_clusters(conn, new, bulk=len(new) >= max(BULK_MIN_ROWS, before))
                unlabelled = self._replace_clusters(conn, changed)
            finally:
                conn.execute(f"PRAGMA cache_size = {int(cache)}")
            return ImportResult(len(new), len(rows) - len(new) - len(changed), len(changed), unlabelled)

        return self._write(write)

    @staticmethod
    def _source(cluster: Cluster | ClusterRecord, sources: dict[Any, str] | None, source: str | None,
                fallback: str | None) -> str | None:
        if not sources:
            return source
        found = sources.get((cluster.dataset or fallback, cluster.id))
        return found if found is not None else sources.get(cluster.id, source)

    @staticmethod
    def _replace_clusters(conn: sqlite3.Connection, changed: list[tuple[Any, ...]]) -> int:
        """New content under old ids; returns how many of them had a label (now dropped).

        Labels, holds and few-shot examples were about the old content; the decision log and
        the proposals keep it (each row names the content hash it was made on).
        """
        if not changed:
            return 0
        keys = json.dumps([[r[0], r[1]] for r in changed])
        pick = "(dataset, {col}) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))"
        unlabelled = conn.execute(
            f"SELECT count(DISTINCT dataset || char(0) || cluster_id) FROM labels WHERE {pick.format(col='cluster_id')}",
            (keys,),
        ).fetchone()[0]
        for table in ("labels", "holds", "examples"):
            conn.execute(f"DELETE FROM {table} WHERE {pick.format(col='cluster_id')}", (keys,))
        update_cols = _ROW_COLUMNS[2:]
        conn.executemany(
            f"UPDATE clusters SET {', '.join(f'{k} = ?' for k in update_cols)}, n_reviews = 0"
            " WHERE dataset = ? AND id = ?",
            [r[2:] + r[:2] for r in changed],
        )
        return int(unlabelled)

    @staticmethod
    def _insert_clusters(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], bulk: bool) -> None:
        """Insert rows in `_ROW_COLUMNS` order; a bulk load builds the secondary indexes once after.

        Building an index by sorting all keys once costs a fraction of 100,000 random B-tree
        inserts into each of the five (bench/RESULTS.md). Indexes are dropped and re-created
        from their own SQL inside the caller's transaction, so whichever migration added them,
        they are all back on commit, and a failed import rolls back to them untouched. Small
        imports into a big table insert normally (re-sorting it all would cost more).
        """
        indexes = (
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'clusters'"
                " AND sql IS NOT NULL ORDER BY name"
            ).fetchall()
            if bulk
            else []
        )
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.executemany(
            f"INSERT INTO clusters ({', '.join(_ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in _ROW_COLUMNS)})",
            rows,
        )
        for _, sql in indexes:
            conn.execute(sql)

    @staticmethod
    def _existing_hashes(conn: sqlite3.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        by_dataset: dict[str, list[str]] = {}
        for ds, cid in keys:
            by_dataset.setdefault(ds, []).append(cid)
        for ds, ids in by_dataset.items():
            for start in range(0, len(ids), 50_000):
                chunk = json.dumps(ids[start : start + 50_000])
                for row in conn.execute(
                    "SELECT id, content_hash FROM clusters WHERE dataset = ? AND id IN (SELECT value FROM json_each(?))",
                    (ds, chunk),
                ):
                    found[(ds, row[0])] = row[1]
        return found

    def get_cluster(self, cluster_id: str, dataset: str | None = None) -> Cluster | None:
        row = self._one("SELECT * FROM clusters WHERE dataset = ? AND id = ?", (self._dataset(dataset), cluster_id))
        return _cluster_from_row(row) if row else None

    def known_cluster_ids(self, ids: Iterable[str], dataset: str | None = None) -> set[str]:
        """Which of `ids` are clusters of the dataset (import-decisions checks every row first)."""
        ds = self._dataset(dataset)
        return {cid for _, cid in self._existing_hashes(self.conn, [(ds, i) for i in ids])}

    def cluster_ids(self, dataset: str | None = None) -> list[str]:
        """Ids in natural order: of one dataset, or of all (by dataset, then id)."""
        return [
            r[0]
            for r in self._all(
                "SELECT id FROM clusters WHERE :ds IS NULL OR dataset = :ds ORDER BY dataset, nkey",
                {"ds": self._scope(dataset)},
            )
        ]

    def cluster_keys(self, dataset: str | None = None) -> list[tuple[str, str]]:
        """(dataset, id) of every cluster (or one dataset's), by dataset then natural id order."""
        return [
            (r[0], r[1])
            for r in self._all(
                "SELECT dataset, id FROM clusters WHERE :ds IS NULL OR dataset = :ds ORDER BY dataset, nkey",
                {"ds": self._scope(dataset)},
            )
        ]

    def iter_clusters(self, ids: Iterable[str] | None = None, dataset: str | None = None) -> Iterator[Cluster]:
        """Clusters in natural id order: all of them (of every dataset, or of `dataset`), or the
        given ids of one dataset."""
        if ids is None:
            rows = self.conn.execute(
                "SELECT * FROM clusters WHERE :ds IS NULL OR dataset = :ds ORDER BY dataset, nkey",
                {"ds": self._scope(dataset)},
            )
        else:
            rows = self.conn.execute(
                "SELECT * FROM clusters WHERE dataset = ? AND id IN (SELECT value FROM json_each(?)) ORDER BY nkey",
                (self._dataset(dataset), json.dumps(list(ids))),
            )
        for row in rows:
            yield _cluster_from_row(row)

    def iter_cluster_texts(self, ids: Iterable[str], dataset: str | None = None) -> Iterator[ClusterTexts]:
        """The given clusters of one dataset as captions and numbers only, in natural id order
        (what the learned judge reads: no `Sample` or `Cluster` objects built)."""
        rows = self.conn.execute(
            "SELECT id, closest, furthest, size, stats FROM clusters WHERE dataset = ?"
            " AND id IN (SELECT value FROM json_each(?)) ORDER BY nkey",
            (self._dataset(dataset), json.dumps(list(ids))),
        )
        for cid, closest, furthest, size, stats in rows:
            yield ClusterTexts(cid, _texts(closest) + _texts(furthest), size, json.loads(stats) if stats else None)

    def count_clusters(self, dataset: str | None = None) -> int:
        return self._one(
            "SELECT count(*) FROM clusters WHERE :ds IS NULL OR dataset = :ds", {"ds": self._scope(dataset)}
        )[0]

    def cluster_info(self, cluster_id: str, dataset: str | None = None) -> dict[str, Any] | None:
        """Provenance the Review page shows: dataset, source file, import time, review count."""
        row = self._one(
            "SELECT id, dataset, size, source, imported_at, n_reviews, content_hash FROM clusters"
            " WHERE dataset = ? AND id = ?",
            (self._dataset(dataset), cluster_id),
        )
        return dict(row) if row else None
