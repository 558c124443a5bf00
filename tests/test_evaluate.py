"""Evaluating prompt versions: no leakage, hand-computed kappa and flips, real HTTP to a stand-in.

The stand-in model "reads" the prompt the way a few-shot model is meant to: it answers
Unacceptable when the cluster to classify shares a caption with an Unacceptable example, and
Acceptable otherwise. So the seed (invented examples) calls everything Acceptable, and a version
whose examples include a real file-name cluster catches the other file-name clusters.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from clusterqc import evaluate as ev
from clusterqc import fewshot
from clusterqc.cli import cli
from clusterqc.fewshot import FewShotError
from clusterqc.judges.llm import LLMJudge
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.propose import run_batch
from clusterqc.settings import EndpointConfig
from clusterqc.store import Store
from openai_standin import StandIn

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE
SHARED = "IMG_0001.jpg"  # in every file-name cluster, and in one good cluster (G5)
_BLOCK = re.compile(
    r"### Example \d+\nCluster data:\n```json\n(.*?)\n```\nReason: [^\n]*\nClassification: (\w+)\n", re.DOTALL
)


def _few_shot_model(prompt: str) -> str:
    """Unacceptable iff the cluster to classify has a caption of an Unacceptable example."""
    examples, to_classify = prompt.split("## Cluster to Classify", 1)
    bad: set[str] = set()
    for data, verdict in _BLOCK.findall(examples):
        if verdict == "Unacceptable":
            parsed = json.loads(data)
            bad |= set(parsed["closest_samples"]) | set(parsed["furthest_samples"])
    target = json.loads(to_classify.split("```json\n", 1)[1].split("\n```", 1)[0])
    captions = set(target["closest_samples"]) | set(target["furthest_samples"])
    if captions & bad:
        return "### Reason: Looks like the file-name example.\n**Classification: Unacceptable**"
    return "Reason: Descriptive captions.\nClassification: Acceptable"


def _classified(prompt: str) -> str:
    """The id marker of the cluster a prompt asks about."""
    to_classify = prompt.split("## Cluster to Classify", 1)[1]
    return re.search(r"\[(\w+)\]", to_classify).group(1)


def _clusters() -> list[Cluster]:
    """F0-F5: file-name clusters (human: Unacceptable); G0-G5: descriptive ones (Acceptable)."""
    out = []
    for i in range(6):
        files = [SHARED] + [f"DSC_{i}{k:03d}.JPG [F{i}]" for k in range(9)]
        out.append(Cluster(f"F{i}", tuple(Sample(t) for t in files[:5]), tuple(Sample(t) for t in files[5:])))
        words = [f"[G{i}] A {adj} {noun} photographed at dusk, variant {k}"
                 for k, (adj, noun) in enumerate(zip(["red", "old", "tall", "small", "wet"] * 2,
                                                     ["barn", "bridge", "tower", "boat", "street"] * 2))]
        if i == 5:
            words[-1] = SHARED  # a good cluster with one file name among its samples
        out.append(Cluster(f"G{i}", tuple(Sample(t) for t in words[:5]), tuple(Sample(t) for t in words[5:])))
    return out


def _judge(standin, template) -> LLMJudge:
    return LLMJudge(EndpointConfig(model="standin-model", base_url=standin.base_url, api_key="sk-test-123456789",
                                   max_retries=0, timeout=10), template)


@pytest.fixture
def curated(tmp_path, standin):
    """The seed's proposals from the stand-in, reviewed: F* overridden to Unacceptable, G* accepted."""
    standin.answer = _few_shot_model
    store = Store(tmp_path / "eval.db")
    store.import_clusters(_clusters())
    judge = _judge(standin, fewshot.active_template(store))
    result = run_batch(store, judge, concurrency=4)
    judge.close()
    assert result.progress.proposed == 12
    for p in store.proposals():
        assert p.verdict is A  # the seed knows no file-name cluster
        store.decide(p.cluster_id, "ann", U if p.cluster_id.startswith("F") else A, proposal_id=p.id)
    return store


def test_evaluation_against_the_curators_over_http(curated, standin):
    store = curated
    picks = fewshot.suggest(store, 2)
    assert {(c.verdict, c.overridden) for c in picks} == {(U, True), (A, False)}
    fewshot.mark_example(store, "F0", "Camera file names only; nothing describes the image.", "ann")
    fewshot.create_prompt(store, "v2", ["F0", "G0"])
    standin.reset()
    standin.answer = _few_shot_model

    result = ev.evaluate(store, ["v2", "seed"], lambda t: _judge(standin, t), concurrency=4)

    # No leakage: v2 never classified its own examples, and neither did the seed (same clusters).
    asked = [(r.prompt, _classified(r.prompt)) for r in standin.chat_requests()]
    assert len(asked) == 10  # the seed already answered everything: only v2 was asked
    assert {cid for _, cid in asked} == {f"F{i}" for i in range(1, 6)} | {f"G{i}" for i in range(1, 6)}
    assert result.cluster_ids == result.compared_ids == [f"F{i}" for i in range(1, 6)] + [f"G{i}" for i in range(1, 6)]
    assert not {"F0", "G0"} & set(result.compared_ids)

    v2, seed = result.scores
    # Hand-computed. Seed: says Acceptable to all 10; humans 5 A / 5 U -> po = 0.5, pe = 0.5, kappa 0.
    assert (seed.stats.n, seed.stats.agreement, seed.stats.kappa.value) == (10, 0.5, pytest.approx(0.0))
    assert seed.stats.confusion == [[5, 0], [5, 0]]
    # v2: catches F1-F5 and wrongly flags G5 -> po = 0.9, pe = (5*4 + 5*6)/100 = 0.5, kappa 0.8.
    assert v2.stats.confusion == [[4, 1], [0, 5]]
    assert v2.stats.agreement == pytest.approx(0.9)
    assert v2.stats.kappa.value == pytest.approx(0.8)
    assert v2.stats.kappa.low <= 0.8 <= v2.stats.kappa.high
    assert (v2.unparsed, v2.missing) == (0, 0)
    assert [(f.cluster_id, f.before, f.after, f.toward) for f in result.flips] == [
        ("F1", A, U, True), ("F2", A, U, True), ("F3", A, U, True), ("F4", A, U, True), ("F5", A, U, True),
        ("G5", A, U, False),
    ]
    assert (result.toward, result.away) == (5, 1)

    text = ev.format_comparison(result)
    assert "6 cluster(s) changed verdict from seed to v2: 5 toward the curators, 1 away" in text
    assert re.search(r"^v2\s+\w{12}\s+10\s+0\.900\s+0\.800 ", text, re.M)

    # Resumable: a second evaluation asks nothing new and reports the same numbers.
    again = ev.evaluate(store, ["v2", "seed"], lambda t: _judge(standin, t))
    assert len(standin.chat_requests()) == 10
    assert ev.score_rows(again) == ev.score_rows(result)


def test_an_example_is_never_in_its_own_evaluation_set(curated):
    store = curated
    fewshot.mark_example(store, "F0", "file names", "ann")
    fewshot.mark_example(store, "F3", "file names", "ann")
    a = fewshot.create_prompt(store, "a", ["F0", "G1"])
    b = fewshot.create_prompt(store, "b", ["F3", "G1", "G2"], mode="append", base="a")
    assert fewshot.example_cluster_ids(b) == {"F0", "G1", "F3", "G2"}  # the parent's examples too
    gold = {cid for _, cid in ev.gold_labels(store)}
    assert set(ev.evaluation_ids(store, [a])) == gold - {"F0", "G1"}
    assert set(ev.evaluation_ids(store, [b])) == gold - {"F0", "G1", "F3", "G2"}
    assert set(ev.evaluation_ids(store, [a, b])) == gold - {"F0", "G1", "F3", "G2"}
    seed = fewshot.get_prompt(store, "seed")
    assert set(ev.evaluation_ids(store, [seed])) == gold


def _store_answers(store: Store, judge: str, version: str, answers: dict[str, Verdict | None]) -> None:
    store.add_proposals(
        Proposal(cid, judge, version, v, "r", raw="x", parse_error=None if v else "no verdict")
        for cid, v in answers.items()
    )


def test_scores_skip_unparsed_and_contested_clusters(tmp_path):
    """Hand-made answers: unparsed and missing are counted, not scored; contested labels are left out."""
    store = Store(tmp_path / "hand.db")
    store.import_clusters(_clusters())
    for c in _clusters():
        store.decide(c.id, "ann", U if c.id.startswith("F") else A)
    store.decide("G4", "bob", U)  # ann and bob disagree on G4: no gold label
    old = fewshot.get_prompt(store, "seed")
    fewshot.mark_example(store, "F0", "file names", "ann")
    new = fewshot.create_prompt(store, "new", ["F0"], mode="append")
    gold = ev.gold_labels(store)
    assert "G4" not in gold and len(gold) == 11
    _store_answers(store, "j", old["version"], {"F1": A, "F2": U, "F3": None, "G0": A, "G1": A, "G2": U, "G3": A,
                                                "G5": A, "F4": A, "F5": U, "F0": A})
    _store_answers(store, "j", new["version"], {"F1": U, "F2": U, "F3": U, "G0": A, "G1": U, "G2": A, "G3": A,
                                                "G5": A, "F5": None})
    result = ev.compare(store, ["new", "seed"], "j")
    # Common set: gold minus F0 = 10 clusters; F3 (seed unparsed), F5 (new unparsed), F4 (new missing) drop.
    assert result.compared_ids == ["F1", "F2", "G0", "G1", "G2", "G3", "G5"]
    new_s, old_s = result.scores
    assert (new_s.unparsed, new_s.missing, old_s.unparsed, old_s.missing) == (1, 1, 1, 0)
    # new vs human: F1 U/U, F2 U/U, G0 A/A, G1 A/U, G2 A/A, G3 A/A, G5 A/A -> [[4,1],[0,2]]
    assert new_s.stats.confusion == [[4, 1], [0, 2]]
    po, pe = 6 / 7, (5 * 4 + 2 * 3) / 49
    assert new_s.stats.kappa.value == pytest.approx((po - pe) / (1 - pe))
    # seed vs human: F1 U/A, F2 U/U, G0 A/A, G1 A/A, G2 A/U, G3 A/A, G5 A/A -> [[4,1],[1,1]]
    assert old_s.stats.confusion == [[4, 1], [1, 1]]
    po, pe = 5 / 7, (5 * 5 + 2 * 2) / 49
    assert old_s.stats.kappa.value == pytest.approx((po - pe) / (1 - pe))
    assert [(f.cluster_id, f.toward) for f in result.flips] == [("F1", True), ("G1", False), ("G2", True)]


def test_cli_evaluate_prints_the_comparison(curated, standin, monkeypatch):
    store = curated
    fewshot.mark_example(store, "F0", "Camera file names only.", "ann")
    fewshot.create_prompt(store, "v2", ["F0", "G0"])
    monkeypatch.setenv("STANDIN_KEY", "sk-test-123456789")
    args = ["evaluate", "--db", str(store.path), "--prompt", "v2", "--against", "seed", "--judge", "llm",
            "--model", "standin-model", "--base-url", standin.base_url, "--api-key-env", "STANDIN_KEY"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "5 toward the curators, 1 away" in result.stdout
    assert re.search(r"^seed\s+\w{12}\s+10\s+0\.500\s+0\.000 ", result.stdout, re.M)
    assert "sk-test" not in result.output

    bad = CliRunner().invoke(cli, ["evaluate", "--db", str(store.path), "--prompt", "nope", "--judge", "offline"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: no prompt named 'nope'")


def test_nothing_to_evaluate_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "empty.db")
    store.import_clusters(_clusters())
    with pytest.raises(FewShotError, match="no reviewed clusters"):
        ev.evaluate(store, ["seed"], lambda t: None)


def test_cli_evaluate_against_a_closed_port_fails_at_once_with_one_line(curated, monkeypatch):
    """Issue 16: `evaluate --judge llm` at a port nobody listens on printed nothing for 110 s."""
    store = curated
    fewshot.mark_example(store, "F0", "Camera file names only.", "ann")
    fewshot.create_prompt(store, "v2", ["F0", "G0"])
    closed = StandIn()  # bound, never started, then closed: connections are refused
    url = closed.base_url
    closed._server.server_close()
    monkeypatch.setenv("STANDIN_KEY", "sk-test-123456789")
    args = ["evaluate", "--db", str(store.path), "--prompt", "v2", "--against", "seed", "--judge", "llm",
            "--model", "standin-model", "--base-url", url, "--api-key-env", "STANDIN_KEY"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "connection refused" in errors[0] and url in errors[0], result.output
    assert "Traceback" not in result.output
