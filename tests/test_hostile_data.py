"""Hostile data through the importers, the store, the judges and the exports.

Captions are scraped from the open web, and cluster files come from other people's pipelines:
anything can be in them. The promises: text is kept byte for byte (NUL, RTL overrides, HTML,
1 MB captions); a file that cannot be read (invalid UTF-8, JSON nested 100,000 deep, raw
control characters) is refused with one line naming the file and the place, and nothing at all
is written; sizes no real file reaches (10,000 samples in a cluster, 100,000 clusters in one
file) neither crash nor hang anything downstream.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterqc.export import export_labels
from clusterqc.ingest import IngestError, import_files
from clusterqc.model import Cluster, Sample, Verdict
from clusterqc.prompt import default_template
from clusterqc.store import Store

FORMATS = ("json", "jsonl", "csv", "parquet")
NASTY = [
    "\x00", "a\x00b", "\u202eevil\u202c", "\u200b", "\ufeff", "\ufffd", "<script>alert(1)</script>",
    "![x](http://198.51.100.7/t.png)", "[click](javascript:alert(1))", "=cmd|' /C calc'!A0", "+1", "@SUM(A1)",
    "\r\n", "\r", "\n\n", '"', '""', "'", "\\", "\t", ",", "{", "]", "\U0001f600", "\u4e2d\u6587", "\u05e2\u05d1",
    "&amp;&lt;", "%s%n", "\x1b[31m", "\x7f", "\u0085", "\u2028",
]
# A caption of about 1 MB mixing scripts, markup and control characters.
MEGABYTE = ("é漢🙂 <b>bold</b> \x00 \u202e " * 40_000)[:1_000_000]


def write_file(folder: Path, fmt: str, clusters: list[Cluster], name: str = "clusters") -> Path:
    """`clusters` in one of the formats users bring (the luvdatacomp layout for JSON)."""
    path = folder / f"{name}.{fmt}"
    records = [
        {"cluster_id": c.id, "closest_samples": [s.text for s in c.closest], "furthest_samples": [s.text for s in c.furthest]}
        for c in clusters
    ]
    if fmt == "json":
        doc = {r["cluster_id"]: {k: r[k] for k in ("closest_samples", "furthest_samples")} for r in records}
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]))
            writer.writeheader()
            for r in records:
                writer.writerow({**r, **{k: json.dumps(r[k], ensure_ascii=False) for k in ("closest_samples", "furthest_samples")}})
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def cluster(cid: str, closest: list[str], furthest: list[str] | None = None) -> Cluster:
    return Cluster(cid, tuple(map(Sample, closest)), tuple(map(Sample, furthest or ["a far caption"])))


def run_guarded(code: str, timeout: float = 120) -> str:
    """Run `code` in a fresh interpreter: a hang or a crash fails the test instead of stalling the run.

    A hang guard, not a speed assertion: what runs here takes seconds when the code is linear.
    """
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout} s (quadratic or worse on hostile input?)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# --------------------------------------------------------------------------- kept byte for byte


@pytest.mark.parametrize("fmt", FORMATS)
def test_megabyte_captions_and_control_characters_round_trip(tmp_path: Path, fmt: str) -> None:
    original = [
        cluster("Cluster_1", [MEGABYTE, "a\x00b", *NASTY[:8]], [MEGABYTE[::-1]]),
        cluster("Cluster_\u202e<script>", NASTY[8:], ["\x00"]),
    ]
    path = write_file(tmp_path, fmt, original)
    with Store(tmp_path / "t.db") as store:
        result = import_files(store, [path])
        assert result.added == 2
        assert [store.get_cluster(c.id) for c in original] == [replace(c, dataset=path.stem) for c in original]
        assert import_files(store, [path]).unchanged == 2  # identity survives the hostile bytes
        # Long captions reach the model whole (the prompt lists samples as JSON strings).
        assert json.dumps(MEGABYTE, ensure_ascii=False)[1:-1] in default_template().render(store.get_cluster("Cluster_1"))


def test_labels_with_hostile_notes_export_and_read_back(tmp_path: Path) -> None:
    with Store(tmp_path / "t.db") as store:
        store.import_clusters([cluster(f"C{i}", [NASTY[i]]) for i in range(len(NASTY))])
        for i, note in enumerate(NASTY):
            store.decide(f"C{i}", "ana\u202e", Verdict.ACCEPTABLE, note=note)
        for fmt in ("jsonl", "parquet", "csv"):
            out = tmp_path / f"labels.{fmt}"
            assert export_labels(store, out, fmt)["rows"] == len(NASTY)
    back = pd.read_json(tmp_path / "labels.jsonl", lines=True, dtype=False)
    assert list(back["note"]) == NASTY
    assert list(pd.read_parquet(tmp_path / "labels.parquet")["note"]) == NASTY
    with open(tmp_path / "labels.csv", newline="", encoding="utf-8") as fh:
        notes = [row["note"] for row in csv.DictReader(fh)]
    assert len(notes) == len(NASTY)
    # CSV keeps every note, but a formula-looking one is defused for spreadsheets.
    for note, got in zip(NASTY, notes):
        assert got in (note, "'" + note)
        assert not got[:1] in ("=", "+", "@")


captions = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=6).map("".join),
)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(closest=st.lists(captions, min_size=1, max_size=6), furthest=st.lists(captions, min_size=1, max_size=3),
       cid=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=12))
def test_any_caption_text_round_trips_through_every_format(
    tmp_path_factory: pytest.TempPathFactory, fmt: str, closest: list[str], furthest: list[str], cid: str
) -> None:
    folder = tmp_path_factory.mktemp("rt")
    original = cluster(cid, closest, furthest)
    path = write_file(folder, fmt, [original])
    with Store(folder / "t.db") as store:
        try:
            import_files(store, [path])
        except IngestError as exc:  # refusing is allowed only with the file named, and then nothing is written
            assert str(path) in str(exc)
            assert store.count_clusters() == 0
            pytest.fail(f"valid text refused: {exc}")
        assert store.get_cluster(cid) == replace(original, dataset=path.stem)


# --------------------------------------------------------------------------- refused whole


GOOD = b'{"ok_1": {"closest_samples": ["fine"], "furthest_samples": ["also fine"]}}'
DEEP = 100_000
BROKEN: dict[str, tuple[str, bytes, str]] = {
    "invalid UTF-8 in JSON": ("json", b'{"c1": {"closest_samples": ["caf\xe9"], "furthest_samples": ["x"]}}', "UTF-8"),
    "invalid UTF-8 in JSONL line 2": (
        "jsonl",
        b'{"cluster_id": "a", "closest_samples": ["x"], "furthest_samples": ["y"]}\n'
        b'{"cluster_id": "b", "closest_samples": ["\xff\xfe"], "furthest_samples": ["y"]}\n',
        "line 2",
    ),
    "invalid UTF-8 in CSV": ("csv", b'cluster_id,closest_samples,furthest_samples\nc1,"[""\xc3\x28""]","[""x""]"\n', "UTF-8"),
    "raw NUL inside a JSON string": ("json", b'{"c1": {"closest_samples": ["a\x00b"], "furthest_samples": ["x"]}}', "line 1"),
    "raw NUL inside a CSV cell": ("csv", b'cluster_id,closest_samples,furthest_samples\nc1,"[""a\x00b""]","[""x""]"\n', "row"),
    "file nested 100,000 deep": ("json", b"[" * DEEP + b"]" * DEEP, "nested too deeply"),
    "sample nested 100,000 deep": (
        "json", b'{"c1": {"closest_samples": [' + b"[" * DEEP + b"]" * DEEP + b'], "furthest_samples": ["x"]}}', "nested too deeply"
    ),
    "JSONL line nested 100,000 deep": ("jsonl", b'{"cluster_id": "a", "x": ' + b"{\"a\":" * DEEP + b"1" + b"}" * DEEP + b"}\n", "line 1"),
    "CSV cell nested 100,000 deep": (
        "csv", b'cluster_id,closest_samples,furthest_samples\nc1,"' + b"[" * DEEP + b"]" * DEEP + b'","[""x""]"\n', "row"
    ),
    "a lone surrogate escape": ("json", b'{"c1": {"closest_samples": ["\\ud800"], "furthest_samples": ["x"]}}', "surrogate"),
    "a 5000-digit size": ("jsonl", b'{"cluster_id": "a", "closest_samples": ["x"], "furthest_samples": ["y"], "size": '
                          + b"9" * 5000 + b"}\n", "line 1"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_unreadable_files_are_refused_whole_with_the_place_named(tmp_path: Path, name: str) -> None:
    fmt, payload, place = BROKEN[name]
    good = tmp_path / "good.json"
    good.write_bytes(GOOD)
    bad = tmp_path / f"bad.{fmt}"
    bad.write_bytes(payload)
    with Store(tmp_path / "t.db") as store:
        store.import_clusters([cluster("existing", ["kept"])])
        with pytest.raises(IngestError) as caught:
            import_files(store, [good, bad])  # the good file goes in with the bad one or not at all
        assert store.cluster_ids() == ["existing"]
    message = str(caught.value)
    assert message.startswith(str(bad)) and place in message, message
    assert "\n" not in message and len(message) < 500


# --------------------------------------------------------------------------- sizes


def test_ten_thousand_samples_in_a_cluster_import_and_render(tmp_path: Path) -> None:
    big = cluster("Cluster_big", [f"caption {i} of a harbour at dusk" for i in range(10_000)], ["x"] * 10_000)
    path = write_file(tmp_path, "json", [big])
    with Store(tmp_path / "t.db") as store:
        import_files(store, [path])
        assert store.get_cluster("Cluster_big") == replace(big, dataset=path.stem)
        assert "caption 9999 of a harbour" in default_template().render(big)


def test_offline_judge_returns_on_ten_thousand_samples(tmp_path: Path) -> None:
    """The offline judge runs on every cluster of a batch: one giant cluster must not stall it."""
    out = run_guarded(
        "from clusterqc.model import Cluster, Sample\n"
        "from clusterqc.judges.offline import OfflineJudge\n"
        "words = 'red bicycle park harbour aerial view photo cat dog tree house blue car'.split()\n"
        "texts = [' '.join(words[(i * 7 + k) % len(words)] for k in range(6)) + f' {i}' for i in range(10_000)]\n"
        "c = Cluster('big', tuple(map(Sample, texts)), tuple(map(Sample, texts[:5])))\n"
        "print(OfflineJudge().judge(c).verdict)\n",
        timeout=90,
    )
    assert "Verdict." in out


@pytest.mark.slow
def test_hundred_thousand_clusters_in_one_file(tmp_path: Path) -> None:
    n = 100_000
    path = tmp_path / "many.json"
    path.write_text(
        json.dumps({f"Cluster_{i}": {"closest_samples": [f"a {i}.{j}" for j in range(5)],
                                     "furthest_samples": [f"b {i}.{j}" for j in range(5)]} for i in range(n)}),
        encoding="utf-8",
    )
    db = tmp_path / "many.db"
    cmd = [sys.executable, "-m", "clusterqc", "import", str(path), "--db", str(db)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert f"imported {n:,}".replace(",", "") in first.stdout.replace(",", "")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"{n} unchanged" in again.stdout.replace(",", "")
    with Store(db) as store:
        assert store.count_clusters() == n and store.integrity_check() == "ok"
        assert store.next_cluster("ana") == "Cluster_0"
        store.decide("Cluster_99999", "ana", Verdict.UNACCEPTABLE)
        assert export_labels(store, tmp_path / "labels.csv")["rows"] == 1
