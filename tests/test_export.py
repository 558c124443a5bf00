"""Label export: golden rows, formula neutralising, Unicode round trips, the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.export import export_frame, export_labels, neutralise_formulas, to_bytes
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE
UNICODE_NOTE = "naïve café 東京 👩‍🔬 مرحبا e\u0301 line1\nline2 \u2028 \"quoted\", comma"
RISKY_NOTES = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "\uff1d1+1"]


def build(path: Path) -> Store:
    """Five clusters: two reviewed (one twice), one model-only, one unparsed-only, one untouched."""
    store = Store(path)
    store.import_clusters(
        [Cluster(f"C_{i}", (Sample(f"caption {i}"),), (Sample(f"far {i}"),)) for i in range(1, 6)], source="t"
    )
    store.add_proposal(Proposal("C_1", "gpt", "v1", A, "looks fine"))
    store.add_proposal(Proposal("C_2", "gpt", "v1", A, "=1+1 tricky reason"))
    store.add_proposal(Proposal("C_3", "gpt", "v1", U, "junk"))
    store.add_proposal(Proposal("C_4", "gpt", "v1", None, "", raw="???", parse_error="no verdict"))
    pid = {p.cluster_id: p.id for p in store.proposals()}
    store.decide("C_1", "ann", A, proposal_id=pid["C_1"], note=UNICODE_NOTE)
    store.decide("C_2", "ann", A, proposal_id=pid["C_2"], note="first look")
    store.decide("C_2", "bob", U, proposal_id=pid["C_2"], note="=cmd|' /C calc'!A0")
    return store


EXPECTED = [
    # cluster_id, label, label_source, reviewers, n_reviews, model_verdict, model_reason, judge, prompt, agrees, note
    ("C_1", "Acceptable", "reviewed", ["ann"], 1, "Acceptable", "looks fine", "gpt", "v1", True, UNICODE_NOTE),
    ("C_2", "Unacceptable", "reviewed", ["ann", "bob"], 2, "Acceptable", "=1+1 tricky reason", "gpt", "v1", False,
     "first look\n=cmd|' /C calc'!A0"),
]
MODEL_ONLY = ("C_3", "Unacceptable", "model_only", [], 0, "Unacceptable", "junk", "gpt", "v1", None, "")
COLS = ["cluster_id", "label", "label_source", "reviewers", "n_reviews", "model_verdict", "model_reason", "judge",
        "prompt_version", "agrees", "note"]


def as_tuples(df: pd.DataFrame) -> list[tuple]:
    return [
        tuple(None if (not isinstance(v, list) and pd.isna(v)) else v for v in row)
        for row in df[COLS].itertuples(index=False, name=None)
    ]


def test_golden_rows_reviewed_only(tmp_path: Path) -> None:
    df = export_frame(build(tmp_path / "e.db"))
    assert list(df.columns) == list(Store.EXPORT_COLUMNS)
    assert as_tuples(df) == EXPECTED
    assert df["decided_at"].notna().all()


def test_include_unreviewed_adds_model_only_rows(tmp_path: Path) -> None:
    df = export_frame(build(tmp_path / "e.db"), include_unreviewed=True)
    # C_4 has only an unparsed answer and C_5 none: no label, so never exported.
    assert as_tuples(df) == EXPECTED + [MODEL_ONLY]
    assert pd.isna(df.loc[2, "decided_at"])


def test_model_verdict_prefers_the_active_prompt_version(tmp_path: Path) -> None:
    store = build(tmp_path / "e.db")
    store.add_proposal(Proposal("C_1", "gpt", "v2", U, "newer"))
    assert export_frame(store).loc[0, "prompt_version"] == "v2"  # latest parsed wins by default
    store.set_setting("active_prompt", "v1")
    row = export_frame(store).loc[0]
    assert (row["prompt_version"], row["model_verdict"], bool(row["agrees"])) == ("v1", "Acceptable", True)


def test_csv_golden_with_formulas_neutralised() -> None:
    df = pd.DataFrame(
        {"cluster_id": ["=C", "C_2"], "reviewers": [["@ann", "bob"], []], "n_reviews": [-1, 2],
         "note": ["-2+3", "a=b is fine"], "agrees": pd.array([True, None], dtype="boolean")}
    )
    got = to_bytes(df, "csv").decode("utf-8")
    assert got == (
        '"cluster_id","reviewers","n_reviews","note","agrees"\n'
        '"\'=C","\'@ann; bob",-1,"\'-2+3",true\n'
        '"C_2","",2,"a=b is fine",\n'
    )


@pytest.mark.parametrize("note", RISKY_NOTES)
def test_every_formula_start_is_neutralised(note: str) -> None:
    assert neutralise_formulas(pa.array([note, "plain " + note, None])).to_pylist() == ["'" + note, "plain " + note, None]
    df = pd.DataFrame({"note": [note], "n": [1]})
    assert pd.read_csv(io.BytesIO(to_bytes(df, "csv")), dtype=str)["note"].tolist() == ["'" + note]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_through_pandas(tmp_path: Path, fmt: str) -> None:
    df = export_frame(build(tmp_path / "e.db"), include_unreviewed=True)
    data = to_bytes(df, fmt)
    if fmt == "csv":
        back = pd.read_csv(io.BytesIO(data), keep_default_na=False, dtype=str)
        assert back["note"].tolist() == [UNICODE_NOTE, "first look\n=cmd|' /C calc'!A0", ""]
        assert back["model_reason"].tolist() == ["looks fine", "'=1+1 tricky reason", "junk"]
        assert back["reviewers"].tolist() == ["ann", "ann; bob", ""]
        assert back["agrees"].tolist() == ["true", "false", ""]
    elif fmt == "jsonl":
        back = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        assert back["note"].tolist() == df["note"].tolist()
        assert back["reviewers"].tolist() == [["ann"], ["ann", "bob"], []]
        assert [json.loads(line)["agrees"] for line in data.decode().splitlines()] == [True, False, None]
    else:
        back = pd.read_parquet(io.BytesIO(data))
        assert back["note"].tolist() == df["note"].tolist()
        assert [list(r) for r in back["reviewers"]] == [["ann"], ["ann", "bob"], []]
        assert back["n_reviews"].tolist() == [1, 2, 0]


def test_unicode_survives_every_format_unchanged(tmp_path: Path) -> None:
    df = export_frame(build(tmp_path / "e.db"))
    rows = list(csv.reader(io.StringIO(to_bytes(df, "csv").decode("utf-8"), newline="")))
    assert rows[1][-1] == UNICODE_NOTE
    assert json.loads(to_bytes(df, "jsonl").decode("utf-8").splitlines()[0])["note"] == UNICODE_NOTE
    assert pq.read_table(io.BytesIO(to_bytes(df, "parquet"))).column("note")[0].as_py() == UNICODE_NOTE


def test_empty_export_still_has_a_header(tmp_path: Path) -> None:
    df = export_frame(Store(tmp_path / "e.db"))
    assert df.empty
    assert pd.read_csv(io.BytesIO(to_bytes(df, "csv"))).columns.tolist() == list(Store.EXPORT_COLUMNS)
    assert pd.read_parquet(io.BytesIO(to_bytes(df, "parquet"))).columns.tolist() == list(Store.EXPORT_COLUMNS)


# --------------------------------------------------------------------------- CLI


def test_cli_export_formats_and_message(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    build(db).close()
    runner = CliRunner()
    res = runner.invoke(cli, ["export", "--db", str(db), "--out", str(tmp_path / "l.csv")])
    assert res.exit_code == 0, res.output
    assert "wrote 2 rows" in res.output and "2 reviewed, 0 model_only" in res.output
    assert "3 of 5 clusters left out" in res.output
    assert pd.read_csv(tmp_path / "l.csv")["cluster_id"].tolist() == ["C_1", "C_2"]
    res = runner.invoke(cli, ["export", "--db", str(db), "--out", str(tmp_path / "l.data"), "--format", "jsonl",
                              "--include-unreviewed"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "l.data").read_text(encoding="utf-8").splitlines()) == 3
    res = runner.invoke(cli, ["export", "--db", str(db), "--out", str(tmp_path / "l.parquet")])
    assert res.exit_code == 0 and len(pd.read_parquet(tmp_path / "l.parquet")) == 2


def test_cli_export_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    build(db).close()
    runner = CliRunner()
    res = runner.invoke(cli, ["export", "--db", str(db), "--out", str(tmp_path / "labels.txt")])
    assert res.exit_code == 1 and "labels.txt" in res.output and "--format" in res.output
    assert res.output.count("\n") == 1
    res = runner.invoke(cli, ["export", "--db", str(db), "--out", str(tmp_path / "nodir" / "l.csv")])
    assert res.exit_code == 1 and "does not exist" in res.output
    assert not list(tmp_path.glob("labels*")) and not (tmp_path / "nodir").exists()
    res = runner.invoke(cli, ["export", "--db", str(tmp_path / "typo.db"), "--out", str(tmp_path / "l.csv")])
    assert res.exit_code == 1 and "typo.db: no such database" in res.output
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "l.csv").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("include_unreviewed", [False, True])
def test_file_export_matches_the_page_download(tmp_path: Path, fmt: str, include_unreviewed: bool) -> None:
    """The CLI's files come from SQLite's JSON lines, the page's downloads from the DataFrame: same data."""
    store = build(tmp_path / "e.db")
    store.decide("C_1", "bob", Verdict.ACCEPTABLE, note='=SUM(A1) "x"\u2029\\ tab\tend')
    out = tmp_path / f"labels.{fmt}"
    counts = export_labels(store, out, fmt, include_unreviewed)
    page = to_bytes(export_frame(store, include_unreviewed), fmt)
    data = out.read_bytes()
    if fmt == "csv":
        assert data == page
    elif fmt == "jsonl":
        assert b"\xe2\x80\xa9" not in data  # U+2029 escaped, as in the page's JSONL
        assert [json.loads(line) for line in data.splitlines()] == [json.loads(line) for line in page.splitlines()]
    else:
        assert pq.read_table(io.BytesIO(data)).to_pylist() == pq.read_table(io.BytesIO(page)).to_pylist()
    df = export_frame(store, include_unreviewed)
    assert counts["rows"] == len(df) and counts["reviewed"] == int((df["label_source"] == "reviewed").sum())
