"""Importers: every format, every kind of bad input (database unchanged), re-import, --replace,
exact Unicode, several files all or nothing."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterqc.ingest import IngestError, demo_path, import_files, read_clusters
from clusterqc.model import Cluster, Sample
from clusterqc.store import Store, _cluster_row

FIXTURES = Path(__file__).parent / "fixtures"

# Text exactly as crawled: entities, CJK, RTL, emoji (with ZWJ and skin tone), U+FFFD,
# combining marks, a NUL, a line separator, control characters and quotes.
NASTY = [
    "Drinking in Durango: Ska Brewing&#039;s 22nd Anniversary &amp; more",
    "Eve 님이 좋아한 장소. 抑え込み！これでわたしの勝ちー！！",
    "مرحبا بالعالم — שלום עולם",
    "family 👨‍👩‍👧‍👦 👍🏽 🇩🇪",
    "Электрическа\ufffd\ufffd плита",
    "e\u0301 cafe\u0301 \u200b zero width",
    'quotes " and \\ backslash, comma, and\nnew line\r\n\ttab \x00 nul \u2028 sep \x7f',
    "  leading and trailing spaces  ",
    "",
]


def dump(store: Store) -> str:
    """Every table's full content: equal dumps mean the database did not change."""
    return "\n".join(store.conn.iterdump())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "t.db") as s:
        yield s


def sample_clusters() -> list[Cluster]:
    return [
        Cluster(
            "Cluster_1",
            tuple(Sample(t) for t in NASTY[:5]),
            tuple(Sample(t) for t in NASTY[5:]),
            size=1234,
        ),
        Cluster(
            "Cluster_2",
            (Sample("a photo", uid="0123456789abcdef0123456789abcdef", url="http://x/1.jpg"), Sample("b")),
            (Sample("c", uid="ffffffffffffffffffffffffffffffff"),),
            size=None,
            dataset="datacomp-small",
        ),
        Cluster("Cluster_10", (Sample("x"),), (Sample("y", url="https://e/ü.png"),), size=0),
    ]


def record(c: Cluster, id_field: str = "cluster_id") -> dict:
    out: dict = {
        id_field: c.id,
        "closest_samples": [s.to_json() for s in c.closest],
        "furthest_samples": [s.to_json() for s in c.furthest],
    }
    if c.size is not None:
        out["size"] = c.size
    if c.dataset is not None:
        out["dataset"] = c.dataset
    return out


def _dumps(value: object, **kw: object) -> str:
    """JSON as a person would save it; \\uXXXX escapes only where raw text cannot be UTF-8."""
    text = json.dumps(value, ensure_ascii=False, **kw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, **kw)
    return text


def write_format(fmt: str, clusters: list[Cluster], folder: Path, name: str = "clusters") -> Path:
    """Write clusters in one of the supported formats (the tests' independent writer)."""
    if fmt == "luvdatacomp":
        path = folder / f"{name}.json"
        data = {c.id: {k: v for k, v in record(c).items() if k != "cluster_id"} for c in clusters}
        path.write_text(_dumps(data, indent=2), encoding="utf-8")
    elif fmt == "array":
        path = folder / f"{name}.json"
        path.write_text(_dumps([record(c, "id") for c in clusters]), encoding="utf-8")
    elif fmt in ("jsonl", "jsonl-as-json", "jsonl-no-ext"):
        ext = {"jsonl": ".jsonl", "jsonl-as-json": ".json", "jsonl-no-ext": ".txt"}[fmt]
        path = folder / f"{name}{ext}"
        lines = [_dumps(record(c)) for c in clusters]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "csv":
        path = folder / f"{name}.csv"
        # A raw lone surrogate in an id cell becomes bytes that are not UTF-8: also a test.
        with path.open("w", encoding="utf-8", errors="surrogatepass", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["cluster_id", "closest_samples", "furthest_samples", "size", "dataset"])
            for c in clusters:
                r = record(c)
                w.writerow(
                    [
                        c.id,
                        _dumps(r["closest_samples"]),
                        _dumps(r["furthest_samples"]),
                        "" if c.size is None else c.size,
                        c.dataset or "",
                    ]
                )
    elif fmt in ("parquet", "parquet-structs"):
        path = folder / f"{name}.parquet"
        if fmt == "parquet":
            closest = [[s.text for s in c.closest] for c in clusters]
            furthest = [[s.text for s in c.furthest] for c in clusters]
        else:
            closest = [[{"text": s.text, "uid": s.uid, "url": s.url} for s in c.closest] for c in clusters]
            furthest = [[{"text": s.text, "uid": s.uid, "url": s.url} for s in c.furthest] for c in clusters]
        table = pa.table(
            {
                "cluster_id": [c.id for c in clusters],
                "closest_samples": closest,
                "furthest_samples": furthest,
                "size": pa.array([c.size for c in clusters], pa.int64()),
                "dataset": [c.dataset for c in clusters],
            }
        )
        pq.write_table(table, path)
    else:  # pragma: no cover
        raise ValueError(fmt)
    return path


def placed(clusters: list[Cluster], path: Path) -> list[Cluster]:
    """The clusters as the importer places them: in their record's dataset, else the file stem's."""
    return [replace(c, dataset=c.dataset or path.stem) for c in clusters]


def text_only(clusters: list[Cluster]) -> list[Cluster]:
    """The clusters as a list-of-strings Parquet column can hold them (no uid/url)."""
    return [
        Cluster(c.id, tuple(Sample(s.text) for s in c.closest), tuple(Sample(s.text) for s in c.furthest), c.size, c.dataset)
        for c in clusters
    ]


FORMATS = ["luvdatacomp", "array", "jsonl", "jsonl-as-json", "jsonl-no-ext", "csv", "parquet", "parquet-structs"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_exactly(fmt: str, tmp_path: Path, store: Store) -> None:
    expected = text_only(sample_clusters()) if fmt == "parquet" else sample_clusters()
    path = write_format(fmt, expected, tmp_path)
    assert read_clusters(path) == placed(expected, path)
    result = import_files(store, [path])
    assert (result.added, result.unchanged, result.replaced) == (3, 0, 0)
    for c in placed(expected, path):
        assert store.get_cluster(c.id, dataset=c.dataset) == c
    assert store.cluster_info("Cluster_1", dataset="clusters")["source"] == str(path)
    assert store.dataset_names() == ["clusters", "datacomp-small"]  # a record's dataset, else the stem


def test_unicode_text_is_stored_byte_for_byte(tmp_path: Path, store: Store) -> None:
    path = write_format("luvdatacomp", sample_clusters(), tmp_path)
    import_files(store, [path])
    got = store.get_cluster("Cluster_1", dataset="clusters")
    assert [s.text for s in got.samples] == NASTY
    assert [s.text.encode("utf-8") for s in got.samples] == [t.encode("utf-8") for t in NASTY]


def test_real_luvdatacomp_file_imports(store: Store) -> None:
    path = FIXTURES / "cluster_samples_luvdatacomp_format.json"
    result = import_files(store, [path])
    assert result.added == 2
    c25 = store.get_cluster("Cluster_25")
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert c25.closest_texts() == raw["Cluster_25"]["closest_samples"]
    assert c25.furthest_texts() == raw["Cluster_25"]["furthest_samples"]
    assert "Ska Brewing&#039;s" in c25.furthest_texts()[1]  # entities are not unescaped
    assert store.get_cluster("Cluster_60").furthest_texts()[-1] == "photo_1 (7) - Copy"


def test_demo_file_is_bundled_and_imports(store: Store) -> None:
    result = import_files(store, [demo_path()])
    assert result.added == 60 and store.count_clusters() == 60
    sizes = [store.get_cluster(i).size for i in store.cluster_ids()]
    assert sum(sizes) == 5868


def test_reimport_changes_nothing(tmp_path: Path, store: Store) -> None:
    path = write_format("jsonl", sample_clusters(), tmp_path)
    import_files(store, [path])
    before = dump(store)
    result = import_files(store, [path])
    assert (result.added, result.unchanged, result.replaced) == (0, 3, 0)
    assert dump(store) == before


def test_changed_content_needs_replace(tmp_path: Path, store: Store) -> None:
    clusters = sample_clusters()
    clusters = [replace(c, dataset=None) for c in clusters]
    import_files(store, [write_format("luvdatacomp", clusters, tmp_path, "v1")], dataset="pool")
    changed = [clusters[0], Cluster("Cluster_2", (Sample("new text"),), (Sample("z"),), size=7), clusters[2]]
    v2 = write_format("luvdatacomp", changed, tmp_path, "v2")
    before = dump(store)
    with pytest.raises(IngestError) as err:
        import_files(store, [v2], dataset="pool")
    assert "Cluster_2" in str(err.value) and "--replace" in str(err.value) and str(v2) in str(err.value)
    assert dump(store) == before
    result = import_files(store, [v2], dataset="pool", replace=True)
    assert (result.added, result.unchanged, result.replaced) == (0, 2, 1)
    assert store.get_cluster("Cluster_2") == replace(changed[1], dataset="pool")
    assert store.get_cluster("Cluster_1") == replace(clusters[0], dataset="pool")
    # Without --dataset the file goes in its own dataset (its stem), so nothing conflicts.
    assert import_files(store, [v2]).added == 3 and store.dataset_names() == ["pool", "v2"]


def test_dataset_option_puts_every_cluster_in_that_dataset(tmp_path: Path) -> None:
    path = write_format("array", sample_clusters(), tmp_path)
    got = {c.id: c.dataset for c in read_clusters(path, dataset="pool-A")}
    assert got == {"Cluster_1": "pool-A", "Cluster_2": "pool-A", "Cluster_10": "pool-A"}
    got = {c.id: c.dataset for c in read_clusters(path)}  # no --dataset: the record's, else the stem
    assert got == {"Cluster_1": "clusters", "Cluster_2": "datacomp-small", "Cluster_10": "clusters"}


def test_id_field_may_be_id_or_cluster_id_and_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "ints.jsonl"
    path.write_text(
        '{"id": 7, "closest_samples": ["a"], "furthest_samples": ["b"]}\n'
        '{"cluster_id": "x", "closest_samples": [{"text": "c"}], "furthest_samples": ["d"]}\n',
        encoding="utf-8",
    )
    assert [c.id for c in read_clusters(path)] == ["7", "x"]


def test_several_files_all_or_nothing(tmp_path: Path, store: Store) -> None:
    good = write_format("jsonl", sample_clusters()[:2], tmp_path, "good")
    other = write_format("csv", [Cluster("Other_1", (Sample("o"),), (Sample("p"),))], tmp_path, "other")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cluster_id": "B1", "closest_samples": ["a"], "furthest_samples": []}\n', encoding="utf-8")
    before = dump(store)
    with pytest.raises(IngestError) as err:
        import_files(store, [good, other, bad])
    assert err.value.file == str(bad) and err.value.where.startswith("line 1")
    assert dump(store) == before
    result = import_files(store, [good, other], dataset="one")
    assert result.added == 3
    assert store.cluster_info("Other_1")["source"] == str(other)
    assert store.cluster_info("Cluster_1")["source"] == str(good)


def test_duplicate_id_across_files_is_an_error(tmp_path: Path, store: Store) -> None:
    a = write_format("jsonl", sample_clusters()[:1], tmp_path, "a")
    b = write_format("luvdatacomp", sample_clusters()[:1], tmp_path, "b")
    before = dump(store)
    with pytest.raises(IngestError) as err:
        import_files(store, [a, b], dataset="same")  # one dataset: one id may come from one file
    assert err.value.file == str(b) and str(a) in err.value.why and "Cluster_1" in err.value.where
    assert dump(store) == before
    assert import_files(store, [a, b]).added == 2  # two datasets (a, b): the same id in each


def test_error_str_is_file_where_why() -> None:
    err = IngestError("f.json", "line 3, column 5", "malformed JSON: Expecting value")
    assert str(err) == "f.json: line 3, column 5: malformed JSON: Expecting value"
    assert (err.file, err.where, err.why) == ("f.json", "line 3, column 5", "malformed JSON: Expecting value")
    assert isinstance(err, ValueError)


def test_store_row_hash_equals_model_content_hash() -> None:
    """The store builds the hash from its JSON columns; it must equal Cluster.content_hash()."""
    for c in sample_clusters():
        assert _cluster_row(c, None, "now")["content_hash"] == c.content_hash()
        assert json.loads(_cluster_row(c, None, "now")["closest"]) == [s.to_json() for s in c.closest]


# --------------------------------------------------------------------------- bad input

OK = '["a", "b"]'


def luv(body: str) -> bytes:
    return ('{\n  "Cluster_1": ' + body + "\n}\n").encode("utf-8")


BAD: list[tuple[str, str, bytes, list[str]]] = [
    # (case, file name, content, fragments the message must contain)
    ("malformed json", "c.json", b'{\n "Cluster_1": {"closest_samples": ["a"],\n "furthest_samples": ["b"],}\n}',
     ["line 3, column", "malformed JSON"]),
    ("truncated json", "c.json", b'{"Cluster_1": {"closest_samples": ["a"', ["line 1", "malformed JSON"]),
    ("missing field", "c.json", luv('{"closest_samples": ' + OK + "}"), ["key 'Cluster_1'", "missing field 'furthest_samples'"]),
    ("list is a string", "c.json", luv('{"closest_samples": "a", "furthest_samples": ' + OK + "}"),
     ["Cluster_1", "closest_samples must be a list"]),
    ("sample is a number", "c.json", luv('{"closest_samples": ["a", 3], "furthest_samples": ' + OK + "}"),
     ["Cluster_1", "closest_samples[1]", "a number"]),
    ("sample object without text", "c.json", luv('{"closest_samples": [{"uid": "x"}], "furthest_samples": ' + OK + "}"),
     ["closest_samples[0]", "missing 'text'"]),
    ("uid wrong type", "c.json", luv('{"closest_samples": [{"text": "t", "uid": 5}], "furthest_samples": ' + OK + "}"),
     ["closest_samples[0]", "'uid' must be a string"]),
    ("empty samples", "c.json", luv('{"closest_samples": [], "furthest_samples": ' + OK + "}"),
     ["Cluster_1", "closest_samples is empty"]),
    ("negative size", "c.json", luv('{"closest_samples": ["a"], "furthest_samples": ["b"], "size": -1}'), ["size must be"]),
    ("size a string", "c.json", luv('{"closest_samples": ["a"], "furthest_samples": ["b"], "size": "12"}'), ["size must be"]),
    ("dataset a number", "c.json", luv('{"closest_samples": ["a"], "furthest_samples": ["b"], "dataset": 3}'),
     ["dataset must be a string"]),
    ("cluster not an object", "c.json", luv('["a", "b"]'), ["key 'Cluster_1'", "expected an object"]),
    ("duplicate key", "c.json",
     b'{"Cluster_1": {"closest_samples": ["a"], "furthest_samples": ["b"]},\n'
     b' "Cluster_1": {"closest_samples": ["c"], "furthest_samples": ["d"]}}',
     ["key 'Cluster_1' (line 2)", "duplicate cluster id 'Cluster_1'", "line 1"]),
    ("lone surrogate", "c.json", luv('{"closest_samples": ["ok \\ud800 bad"], "furthest_samples": ["b"]}'),
     ["closest_samples[0]", "lone surrogate"]),
    ("non-utf8", "c.json", b'{"Cluster_1": {"closest_samples": ["ok"],\n "furthest_samples": ["caf\xe9"]}}',
     ["line 2, byte", "not valid UTF-8", "0xe9"]),
    ("latin-1 csv", "c.csv", b'cluster_id,closest_samples,furthest_samples\nc1,"[""caf\xe9""]","[""b""]"\n',
     ["line 2", "not valid UTF-8"]),
    ("top level number", "c.json", b"42", ["line 1", "expected a JSON object"]),
    ("empty file", "c.json", b"  \n", ["file is empty"]),
    ("empty object", "c.json", b"{}", ["no clusters"]),
    ("array item without id", "c.json", b'[{"closest_samples": ["a"], "furthest_samples": ["b"]}]',
     ["item 1", "missing cluster id"]),
    ("array item not object", "c.json", b'[{"id": "a", "closest_samples": ["a"], "furthest_samples": ["b"]}, 5]',
     ["item 2 (line 1)", "expected an object"]),
    ("empty id", "c.jsonl", b'{"id": " ", "closest_samples": ["a"], "furthest_samples": ["b"]}\n', ["line 1", "cluster id is empty"]),
    ("bool id", "c.jsonl", b'{"id": true, "closest_samples": ["a"], "furthest_samples": ["b"]}\n', ["line 1", "cluster id must be"]),
    ("jsonl bad line", "c.jsonl",
     b'{"id": "a", "closest_samples": ["a"], "furthest_samples": ["b"]}\n\n{"id": "b", "closest_samples": ["a"]\n',
     ["line 3", "malformed JSON"]),
    ("jsonl line is array", "c.jsonl", b'{"id": "a", "closest_samples": ["a"], "furthest_samples": ["b"]}\n[1]\n',
     ["line 2", "expected an object"]),
    ("jsonl duplicate id", "c.jsonl",
     b'{"id": "a", "closest_samples": ["a"], "furthest_samples": ["b"]}\n{"id": "a", "closest_samples": ["c"], "furthest_samples": ["d"]}\n',
     ["line 2", "duplicate cluster id 'a' (first at line 1"]),
    ("csv missing column", "c.csv", b"cluster_id,closest_samples\nc1,[]\n", ["row 1", "missing column(s) furthest_samples"]),
    ("csv bad cell json", "c.csv",
     b'cluster_id,closest_samples,furthest_samples\nc1,"[""a""]","[""b""]"\nc2,"[""a"", ]","[""b""]"\n',
     ["row 3, column closest_samples", "malformed JSON"]),
    ("csv wrong cell count", "c.csv", b'cluster_id,closest_samples,furthest_samples\nc1,"[""a""]"\n', ["row 2", "has 2 cells"]),
    ("csv duplicate id", "c.csv",
     b'id,closest_samples,furthest_samples\nc1,"[""a""]","[""b""]"\nc1,"[""a""]","[""b""]"\n',
     ["row 3", "duplicate cluster id 'c1' (first at row 2"]),
    ("csv bad size", "c.csv", b'id,closest_samples,furthest_samples,size\nc1,"[""a""]","[""b""]",lots\n', ["row 2", "size must be"]),
    ("csv header only", "c.csv", b"cluster_id,closest_samples,furthest_samples\n", ["no clusters"]),
    ("csv unterminated quote", "c.csv", b'cluster_id,closest_samples,furthest_samples\nc1,"[""a""],x\n', ["row 2", "has 2 cells"]),
    ("parquet corrupt", "c.parquet", b"PAR1 this is not parquet PAR1", ["not a readable Parquet file"]),
    ("no such file", "missing.json", b"", ["no such file"]),
]


def write_bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    if name != "missing.json":
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case,name,content,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_place_and_changes_nothing(
    case: str, name: str, content: bytes, fragments: list[str], tmp_path: Path, store: Store
) -> None:
    import_files(store, [write_format("luvdatacomp", sample_clusters(), tmp_path, "base")])
    before = dump(store)
    path = write_bad(tmp_path, name, content)
    with pytest.raises(IngestError) as err:
        import_files(store, [path])
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert dump(store) == before


def test_parquet_missing_column_and_wrong_types(tmp_path: Path) -> None:
    p1 = tmp_path / "a.parquet"
    pq.write_table(pa.table({"cluster_id": ["a"], "closest_samples": [["x"]]}), p1)
    with pytest.raises(IngestError, match="missing column.*furthest_samples"):
        read_clusters(p1)
    p2 = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "closest_samples": [["x"], []], "furthest_samples": [["y"], ["z"]]}), p2)
    with pytest.raises(IngestError, match=r"row 2 \(cluster 'b'\): closest_samples is empty"):
        read_clusters(p2)
    p3 = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "closest_samples": [[1, 2]], "furthest_samples": [["y"]]}), p3)
    with pytest.raises(IngestError, match=r"row 1 .*closest_samples\[0\]"):
        read_clusters(p3)


def test_big_csv_cells_are_fine(tmp_path: Path) -> None:
    """Cells larger than the csv module's default 128 KiB limit (long caption lists)."""
    long = "x" * 200_000
    c = Cluster("big", (Sample(long),), (Sample("y"),))
    assert read_clusters(write_format("csv", [c], tmp_path)) == [replace(c, dataset="clusters")]
