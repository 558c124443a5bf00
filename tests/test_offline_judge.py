"""The offline judge on real DataComp captions: the two shipped clusters and hand-labelled samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterqc.judges.offline import (
    PROMPT_VERSION,
    OfflineJudge,
    cluster_features,
    is_file_name,
    metrics_of,
    is_garbled,
    is_placeholder,
)
from clusterqc.model import Cluster, Sample, Verdict
from clusterqc.parse import parse_answer
from clusterqc.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
JUDGE = OfflineJudge()


def _luv(cid: str) -> Cluster:
    data = json.loads((FIXTURES / "cluster_samples_luvdatacomp_format.json").read_text(encoding="utf-8"))[cid]
    return Cluster(cid, tuple(map(Sample, data["closest_samples"])), tuple(map(Sample, data["furthest_samples"])))


def _captions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (FIXTURES / "datacomp_small_captions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out.setdefault(row["kind"], []).append(row["caption"])
    return out


CAPTIONS = _captions()


def _cluster(cid: str, texts: list[str]) -> Cluster:
    return Cluster(cid, tuple(map(Sample, texts[:5])), tuple(map(Sample, texts[5:])))


def test_real_cluster_60_is_unacceptable_with_evidence():
    proposal = JUDGE.judge(_luv("Cluster_60"))
    assert proposal.verdict is Verdict.UNACCEPTABLE
    assert (proposal.cluster_id, proposal.judge, proposal.prompt_version) == ("Cluster_60", "offline", PROMPT_VERSION)
    assert proposal.reason == (
        "Nearly all captions are placeholder alt text, one is a file name, nearly all repeat each other"
        " and they reuse the same few words: too little real description to keep."
    )
    metrics = metrics_of(proposal.raw)
    assert metrics is not None
    assert "9 are placeholders" in metrics
    assert "1 of 10 captions are file names" in metrics
    assert "9 are near-duplicates" in metrics
    assert "Offline score 4.25 (Unacceptable at 1.0)" in metrics
    assert json.loads(proposal.raw)["verdict"] == "Unacceptable"


def test_real_cluster_25_is_acceptable():
    proposal = JUDGE.judge(_luv("Cluster_25"))
    assert proposal.verdict is Verdict.ACCEPTABLE
    assert proposal.reason == "Varied, descriptive captions with no file names, placeholders, garbled text or repeats."
    assert "no file names, placeholders" in metrics_of(proposal.raw).lower()


def test_sample_hints_follow_sample_order():
    hints = JUDGE.sample_hints(_luv("Cluster_60"))
    assert len(hints) == 10
    assert hints[0] == ["placeholder", "has near-duplicates"]
    assert hints[1] == ["placeholder", "duplicate of #1"]
    assert hints[6] == ["placeholder", "duplicate of #6"]
    assert hints[9] == ["file name"]
    assert JUDGE.sample_hints(_luv("Cluster_25"))[6] == ["HTML entities"]


@pytest.mark.parametrize("caption", CAPTIONS["file_name"])
def test_real_file_names_are_detected(caption):
    assert is_file_name(caption)


@pytest.mark.parametrize("caption", CAPTIONS["placeholder"])
def test_real_placeholders_are_detected(caption):
    assert is_placeholder(caption) and not is_file_name(caption)


@pytest.mark.parametrize("caption", CAPTIONS["garbled"])
def test_real_garbled_captions_are_detected(caption):
    assert is_garbled(caption)


@pytest.mark.parametrize("caption", CAPTIONS["descriptive"])
def test_real_descriptive_captions_are_not_flagged(caption):
    assert not (is_file_name(caption) or is_placeholder(caption) or is_garbled(caption))


def test_descriptive_real_captions_make_an_acceptable_cluster():
    proposal = JUDGE.judge(_cluster("descriptive", CAPTIONS["descriptive"][:10]))
    assert proposal.verdict is Verdict.ACCEPTABLE


def test_file_name_real_captions_make_an_unacceptable_cluster():
    proposal = JUDGE.judge(_cluster("files", CAPTIONS["file_name"][:10]))
    assert proposal.verdict is Verdict.UNACCEPTABLE
    assert proposal.reason.startswith("All captions are file names")
    assert metrics_of(proposal.raw).startswith("10 of 10 captions are file names")


@pytest.mark.parametrize("bad", [0, 1, 2, 3])
def test_a_few_bad_captions_do_not_sink_a_descriptive_cluster(bad):
    texts = CAPTIONS["file_name"][:bad] + CAPTIONS["descriptive"][: 10 - bad]
    assert JUDGE.judge(_cluster("mixed", texts)).verdict is Verdict.ACCEPTABLE


@pytest.mark.parametrize("kind", ["file_name", "placeholder", "garbled"])
def test_four_of_ten_unusable_captions_tip_it(kind):
    texts = CAPTIONS[kind][:4] + CAPTIONS["descriptive"][:6]
    proposal = JUDGE.judge(_cluster("mixed", texts))
    assert proposal.verdict is Verdict.UNACCEPTABLE
    assert proposal.reason.startswith("Many captions are ")
    assert proposal.reason.endswith(": too little real description to keep.")
    assert metrics_of(proposal.raw).startswith("4 of 10 captions are")


def test_near_duplicates_alone_tip_it():
    texts = [CAPTIONS["descriptive"][0]] * 3 + [CAPTIONS["descriptive"][1].upper() + "!"] * 3 + CAPTIONS["descriptive"][2:6]
    features = cluster_features(_cluster("dupes", texts))
    assert features.duplicates == 6
    assert features.count("unusable") == 0
    proposal = JUDGE.judge(_cluster("dupes", texts))
    assert proposal.verdict is Verdict.UNACCEPTABLE
    assert proposal.reason == "Most captions repeat each other: too repetitive to keep."
    assert "6 are near-duplicates of each other" in metrics_of(proposal.raw)


def test_numbered_variants_are_near_duplicates():
    texts = [f"Sunset over the harbour, photo {i}" for i in range(1, 11)]
    assert cluster_features(_cluster("numbered", texts)).duplicates == 10


def test_explicit_terms_are_flagged():
    texts = ["Free XXX porn videos", "nude beach models"] + CAPTIONS["descriptive"][:8]
    cluster = _cluster("explicit", texts)
    proposal = JUDGE.judge(cluster)
    assert proposal.verdict is Verdict.UNACCEPTABLE
    assert proposal.reason == "A few captions use explicit terms (nude, porn, xxx): not suitable to train on."
    assert "explicit terms (nude, porn, xxx)" in metrics_of(proposal.raw)
    assert JUDGE.sample_hints(cluster)[0] == ["explicit term: porn, xxx"]


def test_seed_example_2_is_unacceptable():
    texts = [f"IMG_00{i}.jpg" for i in range(1, 6)] + [f"IMG_10{i}.jpg" for i in range(5)]
    assert JUDGE.judge(_cluster("seed2", texts)).verdict is Verdict.UNACCEPTABLE


def test_deterministic_and_parseable():
    cluster = _luv("Cluster_25")
    a, b = JUDGE.judge(cluster), JUDGE.judge(cluster)
    assert (a.verdict, a.reason, a.raw) == (b.verdict, b.reason, b.raw)
    assert parse_answer(f"Reason: {a.reason}\nClassification: {a.verdict.value}").verdict is a.verdict


def test_empty_and_blank_captions():
    cluster = _cluster("blank", ["", " ", ".", "…"] + CAPTIONS["descriptive"][:6])
    features = cluster_features(cluster)
    assert features.count("empty") == 4 and features.duplicates == 0
    assert JUDGE.judge(cluster).verdict is Verdict.UNACCEPTABLE


def test_proposals_store_like_any_other(tmp_path):
    with Store(tmp_path / "db.sqlite") as store:
        clusters = [_luv("Cluster_25"), _luv("Cluster_60")]
        store.import_clusters(clusters)
        store.add_proposals(JUDGE.judge(c) for c in clusters)
        stored = {p.cluster_id: p.verdict for p in store.proposals(judge="offline")}
    assert stored == {"Cluster_25": Verdict.ACCEPTABLE, "Cluster_60": Verdict.UNACCEPTABLE}


def _demo_clusters() -> list[Cluster]:
    from clusterqc.ingest import demo_path, read_files

    return [rec.to_cluster() for _, records in read_files([demo_path()]) for rec in records]


def test_reasons_are_plain_sentences_without_numbers():
    """A reason is what a curator would write (and what a few-shot prompt teaches): no scores,
    counts or metric names; those are in the proposal's `metrics` for the hover text."""
    for cluster in _demo_clusters():
        proposal = JUDGE.judge(cluster)
        reason = proposal.reason
        assert not any(ch.isdigit() for ch in reason), (cluster.id, reason)
        assert "score" not in reason.lower() and "diversity" not in reason.lower()
        assert reason[0].isupper() and reason.endswith(".") and reason.count(". ") == 0, (cluster.id, reason)
        assert "Offline score" in metrics_of(proposal.raw)


def test_short_captions_are_not_called_descriptive():
    texts = ["Paris", "Berlin", "Rome", "Madrid", "Lisbon", "Vienna street", "Prague", "Oslo", "Bern", "Sofia"]
    proposal = JUDGE.judge(_cluster("terse", texts))
    assert proposal.verdict is Verdict.ACCEPTABLE
    assert proposal.reason == "Short but real captions."


def test_metrics_of_other_answers_is_none():
    assert metrics_of("Reason: fine\nClassification: Acceptable") is None
    assert metrics_of('{"verdict": "Acceptable"}') is None
    assert metrics_of('[1, 2]') is None


@pytest.mark.parametrize("caption,expected", [
    ("Name: O1 053.jpg\nViews: 406\nSize: 64.4 KB\nDescription: ", True),  # a real demo caption
    ("File: DSC_0042\nSize: 2 MB", True),
    ("A red bike leaning on a wall.\nPhoto: bike.jpg", False),  # a description, a file line under it
    ("Title: Sunset at the lake\nCamera: Canon EOS", False),  # metadata, but no file name
])
def test_a_gallery_metadata_block_naming_a_file_is_a_file_name(caption, expected):
    assert is_file_name(caption) is expected
