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

from clusterqc.model import Cluster, ClusterRecord, Sample
from clusterqc.store.connection import Connection, utcnow

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


def _cluster_from_row(row: sqlite3.Row | dict[str, Any]) -> Cluster:
    return Cluster(
        id=row["id"],
        closest=tuple(Sample.from_json(s) for s in json.loads(row["closest"])),
        furthest=tuple(Sample.from_json(s) for s in json.loads(row["furthest"])),
        size=row["size"],
        dataset=row["dataset"],
        stats=json.loads(row["stats"]) if row["stats"] else None,
    )



# One encoder for every row: json.dumps builds a new one per call, which dominated imports.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for a str
_STATS_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False).encode
_text = attrgetter("text")
_STR = repeat(str)  # map(isinstance, items, _STR): a type check per item at C speed

# The columns an import writes, in the order `_cluster_values` gives them.
_ROW_COLUMNS = (
    "id", "nkey", "dataset", "closest", "furthest", "size", "source", "content_hash", "imported_at", "stats",
)
_HASH_AT = _ROW_COLUMNS.index("content_hash")


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


def _cluster_values(cluster: Cluster | ClusterRecord, source: str | None, now: str) -> tuple[Any, ...]:
    """One import row in `_ROW_COLUMNS` order: a tuple binds faster than a dict of names."""
    closest = _samples_json(cluster.closest)
    furthest = _samples_json(cluster.furthest)
    stats = None if cluster.stats is None else _STATS_JSON(cluster.stats)
    # Byte for byte the payload Cluster.content_hash() hashes (sort_keys order: closest, dataset,
    # furthest, size, stats; sample keys clip_score/text/uid/url are already sorted), built from
    # the strings above instead of encoding every sample a second time. tests/test_ingest.py
    # checks equality. `stats` is in it only when the cluster has some (older hashes unchanged).
    payload = (
        f'{{"closest": {closest}, "dataset": {"null" if cluster.dataset is None else _quote(cluster.dataset)}, '
        f'"furthest": {furthest}, "size": {"null" if cluster.size is None else int(cluster.size)}'
        + ("}" if stats is None else f', "stats": {stats}}}')
    )
    return (
        cluster.id,
        natural_key(cluster.id),
        cluster.dataset,
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



class ClusterTable(Connection):
    """The `clusters` table."""

    def import_clusters(
        self,
        clusters: Iterable[Cluster | ClusterRecord],
        source: str | None = None,
        replace: bool = False,
        sources: dict[str, str] | None = None,
    ) -> ImportResult:
        """Write clusters all or nothing: identical ones are skipped, changed ones need `replace`.

        `sources` (cluster id -> file) lets one all-or-nothing call record each cluster's own file
        when several files are imported together; `source` is the fallback.
        """
        now = utcnow()
        rows = [_cluster_values(c, sources.get(c.id, source) if sources else source, now) for c in clusters]
        if not rows:
            return ImportResult(0, 0, 0)

        def write(conn: sqlite3.Connection) -> ImportResult:
            before = conn.execute("SELECT count(*) FROM clusters").fetchone()[0]
            existing = self._existing_hashes(conn, [r[0] for r in rows]) if before else {}
            new = [r for r in rows if r[0] not in existing]
            changed = [r for r in rows if r[0] in existing and existing[r[0]] != r[_HASH_AT]]
            if changed and not replace:
                raise ConflictError([r[0] for r in changed])
            # A big page cache for this transaction: the B-tree inserts of 100,000 rows otherwise
            # spill and re-read pages (3x slower). Restored below; per connection only.
            cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size = {IMPORT_CACHE_KIB}")
            try:
                self._insert_clusters(conn, new, bulk=len(new) >= max(BULK_MIN_ROWS, before))
                update_cols = _ROW_COLUMNS[1:]
                conn.executemany(
                    f"UPDATE clusters SET {', '.join(f'{k} = ?' for k in update_cols)} WHERE id = ?",
                    [r[1:] + r[:1] for r in changed],
                )
            finally:
                conn.execute(f"PRAGMA cache_size = {int(cache)}")
            return ImportResult(len(new), len(rows) - len(new) - len(changed), len(changed))

        return self._write(write)

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
    def _existing_hashes(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), 50_000):
            chunk = json.dumps(ids[start : start + 50_000])
            for row in conn.execute(
                "SELECT id, content_hash FROM clusters WHERE id IN (SELECT value FROM json_each(?))",
                (chunk,),
            ):
                found[row[0]] = row[1]
        return found

    def get_cluster(self, cluster_id: str) -> Cluster | None:
        row = self._one("SELECT * FROM clusters WHERE id = ?", (cluster_id,))
        return _cluster_from_row(row) if row else None

    def known_cluster_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` are clusters in the store (import-decisions checks every row first)."""
        return set(self._existing_hashes(self.conn, list(ids)))

    def cluster_ids(self) -> list[str]:
        return [r[0] for r in self._all("SELECT id FROM clusters ORDER BY nkey")]

    def iter_clusters(self, ids: Iterable[str] | None = None) -> Iterator[Cluster]:
        """Clusters in natural id order, all of them or the given ids."""
        if ids is None:
            rows = self.conn.execute("SELECT * FROM clusters ORDER BY nkey")
        else:
            rows = self.conn.execute(
                "SELECT * FROM clusters WHERE id IN (SELECT value FROM json_each(?)) ORDER BY nkey",
                (json.dumps(list(ids)),),
            )
        for row in rows:
            yield _cluster_from_row(row)

    def count_clusters(self) -> int:
        return self._one("SELECT count(*) FROM clusters")[0]

    def cluster_info(self, cluster_id: str) -> dict[str, Any] | None:
        """Provenance the Review page shows: source file, import time, review count."""
        row = self._one(
            "SELECT id, dataset, size, source, imported_at, n_reviews FROM clusters WHERE id = ?",
            (cluster_id,),
        )
        return dict(row) if row else None

