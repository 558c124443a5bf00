"""Reading the original pipeline's raw JSON and parsed CSV back in as proposals."""

from __future__ import annotations

import json

import pytest

from clusterqc.ingest import IngestError
from clusterqc.model import Verdict
from clusterqc.pipeline_io import read_parsed_csv, read_raw_classifications

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_raw_classifications_are_parsed_by_our_parser(tmp_path):
    answers = {
        "Cluster_25": "### Reason\nDiverse travel places.\n\n### Classification\n**Acceptable**",
        "Cluster_60": "Reason: Placeholders.\nClassification: Unacceptable.",
        "Cluster_7": "Reason: Hard to say.\nClassification: Acceptable or Unacceptable",
        "Cluster_8": {"raw_response": "Classification: Low Value"},
        "Cluster_9": None,
    }
    path = _write(tmp_path, "raw.json", json.dumps(answers))
    proposals = {p.cluster_id: p for p in read_raw_classifications(path, "gpt-4o")}
    assert list(proposals) == list(answers)
    assert proposals["Cluster_25"].verdict is A and proposals["Cluster_25"].reason == "Diverse travel places."
    assert proposals["Cluster_60"].verdict is U
    assert proposals["Cluster_7"].verdict is None and "ambiguous" in proposals["Cluster_7"].parse_error
    assert proposals["Cluster_7"].raw == answers["Cluster_7"]
    assert proposals["Cluster_8"].verdict is U
    assert proposals["Cluster_9"].verdict is None and proposals["Cluster_9"].parse_error == "empty answer"
    assert {(p.judge, p.prompt_version) for p in proposals.values()} == {("gpt-4o", "imported")}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"Cluster_1": "x",\n "Cluster_2": }', r"raw\.json: line 2 column \d+: not valid JSON"),
        ('["Reason: x"]', r"raw\.json: top level: expected an object"),
        ('{"Cluster_1": 3}', r"raw\.json: key 'Cluster_1': expected the model's answer text, got int"),
        ('{"Cluster_1": "a", "Cluster_1": "b"}', r"raw\.json: key 'Cluster_1': appears twice"),
    ],
)
def test_raw_classifications_errors_name_file_and_place(tmp_path, text, message):
    with pytest.raises(IngestError, match=message):
        read_raw_classifications(_write(tmp_path, "raw.json", text), "j")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(IngestError, match=r"nope\.json: no such file"):
        read_raw_classifications(tmp_path / "nope.json", "j")


def test_parsed_csv(tmp_path):
    text = (
        "\ufeffCluster,Reason,Classification\r\n"
        'Cluster_25,"Diverse places, many regions.",Acceptable\r\n'
        'Cluster_60,"Placeholders\nrepeated.",Unacceptable\r\n'
        "Cluster_3,Old vocabulary,High Value\r\n"
        "Cluster_4,The regex found nothing,\r\n"
        "\r\n"
        "Cluster_5,Odd,Maybe\r\n"
    )
    proposals = {p.cluster_id: p for p in read_parsed_csv(_write(tmp_path, "parsed.csv", text), "llama")}
    assert [proposals[c].verdict for c in ("Cluster_25", "Cluster_60", "Cluster_3")] == [A, U, A]
    assert proposals["Cluster_25"].reason == "Diverse places, many regions."
    assert proposals["Cluster_60"].reason == "Placeholders\nrepeated."
    assert proposals["Cluster_4"].verdict is None and proposals["Cluster_4"].parse_error == "line 6: empty classification"
    assert proposals["Cluster_5"].verdict is None and "line 8" in proposals["Cluster_5"].parse_error
    assert proposals["Cluster_5"].raw == "Reason: Odd\nClassification: Maybe"
    assert {(p.judge, p.prompt_version) for p in proposals.values()} == {("llama", "imported")}


def test_csv_columns_found_by_name_in_any_order_and_case(tmp_path):
    text = "classification, cluster ,reason,extra\nUnacceptable,Cluster_1,Dupes,x\n"
    [proposal] = read_parsed_csv(_write(tmp_path, "p.csv", text), "j")
    assert (proposal.cluster_id, proposal.verdict, proposal.reason) == ("Cluster_1", U, "Dupes")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"p\.csv: line 1: empty file"),
        ("Cluster,Verdict\nC1,Acceptable\n", r"p\.csv: line 1: missing column Reason, Classification"),
        ("Cluster,Reason,Classification\nC1,x,Acceptable\nC1,y,Unacceptable\n", r"p\.csv: line 3: cluster 'C1' already on line 2"),
        ("Cluster,Reason,Classification\n,x,Acceptable\n", r"p\.csv: line 2: empty Cluster"),
        ("Cluster,Reason,Classification\nC1,x\n", r"p\.csv: line 2: 2 fields, expected at least 3"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(IngestError, match=message):
        read_parsed_csv(_write(tmp_path, "p.csv", text), "j")


def test_imported_proposals_store_and_unparsed_ones_stay_unparsed(tmp_path):
    from pathlib import Path

    from clusterqc.ingest import read_clusters
    from clusterqc.store import Store

    fixture = Path(__file__).parent / "fixtures" / "cluster_samples_luvdatacomp_format.json"
    raw = _write(tmp_path, "raw.json", json.dumps({
        "Cluster_25": "Reason: Places.\nClassification: Acceptable",
        "Cluster_60": "I cannot decide.",
    }))
    with Store(tmp_path / "db.sqlite") as store:
        store.import_clusters(read_clusters(fixture))
        assert store.add_proposals(read_raw_classifications(raw, "old-run")) == 2
        stored = {p.cluster_id: p for p in store.proposals(judge="old-run")}
        assert stored["Cluster_25"].verdict is A
        assert stored["Cluster_60"].verdict is None and stored["Cluster_60"].raw == "I cannot decide."
        assert store.stats().unparsed == 1
