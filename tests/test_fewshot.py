"""Few-shot curation: examples from decisions, suggestions, prompt versions, guidelines, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc import fewshot
from clusterqc.cli import cli
from clusterqc.fewshot import FewShotError
from clusterqc.ingest import demo_path, import_files
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.prompt import PromptTemplate, default_template, template_version
from clusterqc.store import Store

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE

# One worked example exactly as the seed writes it; the seed's own section is checked against it
# too, so this pattern cannot drift away from the seed's real format.
EXAMPLE_RE = (
    r"### Example (?P<n>\d+)\nCluster data:\n```json\n(?P<json>\{\{\n.*?\n\}\})\n```\n"
    r"Reason: (?P<reason>[^\n]+)\nClassification: (?P<verdict>Acceptable|Unacceptable)\n"
)


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "fs.db")
    import_files(store, [demo_path()])
    return store


def _decide(store: Store, cid: str, model: Verdict, human: Verdict, note: str = "", reviewer: str = "ann") -> None:
    """A model proposal and a reviewer's decision on it (agrees = model == human)."""
    pid = store.add_proposal(Proposal(cid, "m", "p0", model, f"model says {model.value} for {cid}"))
    if pid is None:
        pid = next(p.id for p in store.proposals_for(cid) if p.judge == "m")
    store.decide(cid, reviewer, human, proposal_id=pid, note=note)


def _sections(text: str) -> tuple[str, str, str]:
    """(before the examples, the examples section body, from '## Cluster to Classify' on)."""
    head, rest = text.split("## Examples\n", 1)
    body, tail = rest.split("## Cluster to Classify\n", 1)
    return head, body, tail


def _blocks(body: str) -> list[re.Match[str]]:
    """The example blocks of an examples section, asserting nothing else is in it."""
    matches = list(re.finditer(EXAMPLE_RE + r"\n", body, re.DOTALL))
    assert "".join(m.group(0) for m in matches) == body, "the section holds something besides example blocks"
    return matches


# --------------------------------------------------------------------------- prompt structure


def test_the_example_pattern_describes_the_seed():
    _, body, _ = _sections(default_template().text)
    blocks = _blocks(body)
    assert [int(m["n"]) for m in blocks] == [1, 2, 3]
    assert [m["verdict"] for m in blocks] == ["Acceptable", "Unacceptable", "Acceptable"]


def test_rendered_prompt_has_the_seeds_exact_structure(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_0", A, U, note="Captions are file names and photo numbers, nothing described.")
    _decide(store, "Cluster_5", A, A)
    row = fewshot.create_prompt(store, "real", ["Cluster_0", "Cluster_5"])
    template = PromptTemplate(row["template"], row["name"])
    seed = default_template()
    target = next(store.iter_clusters(["Cluster_9"]))

    head, body, tail = _sections(template.render(target))
    seed_head, _, seed_tail = _sections(seed.render(target))
    assert head == seed_head and tail == seed_tail  # instructions and the cluster to classify: byte for byte

    _, tbody, _ = _sections(template.text)
    blocks = _blocks(tbody)
    assert [int(m["n"]) for m in blocks] == [1, 2]
    assert [m["verdict"] for m in blocks] == ["Unacceptable", "Acceptable"]
    assert blocks[0]["reason"] == "Captions are file names and photo numbers, nothing described."
    assert blocks[1]["reason"] == "model says Acceptable for Cluster_5"  # the accepted model reason
    for m, cid in zip(blocks, ["Cluster_0", "Cluster_5"]):
        cluster = next(store.iter_clusters([cid]))
        data = json.loads(m["json"].replace("{{", "{").replace("}}", "}"))
        assert data == {"closest_samples": cluster.closest_texts(), "furthest_samples": cluster.furthest_texts()}
        assert m["json"].replace("{{", "{").replace("}}", "}") == json.dumps(data, ensure_ascii=False, indent=2)


def test_append_keeps_the_seed_examples_and_numbers_on(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_3", U, U)
    row = fewshot.create_prompt(store, "plus", ["Cluster_3"], mode="append")
    _, body, _ = _sections(row["template"])
    blocks = _blocks(body)
    assert [int(m["n"]) for m in blocks] == [1, 2, 3, 4]
    assert blocks[3]["reason"] == "model says Unacceptable for Cluster_3"
    assert [e.get("cluster_id") for e in row["examples"]] == [None, None, None, "Cluster_3"]
    assert fewshot.example_cluster_ids(row) == {"Cluster_3"}


# --------------------------------------------------------------------------- marking


def test_offered_reason_is_the_models_only_when_accepted(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_1", A, A)
    _decide(store, "Cluster_2", A, U, note="all product codes")
    _decide(store, "Cluster_4", A, U)
    assert fewshot.offered_reason(store, "Cluster_1") == "model says Acceptable for Cluster_1"
    assert fewshot.offered_reason(store, "Cluster_2") == "all product codes"
    assert fewshot.offered_reason(store, "Cluster_4") == ""
    assert fewshot.offered_reason(store, "Cluster_7") == ""


def test_mark_edit_and_unmark_an_example(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_2", A, U)
    with pytest.raises(FewShotError, match="needs a reason"):
        fewshot.mark_example(store, "Cluster_2", "   ", "ann")
    with pytest.raises(FewShotError, match="Cluster_7 has no decision yet"):
        fewshot.mark_example(store, "Cluster_7", "x", "ann")
    with pytest.raises(FewShotError, match="Cluster_999 is not in the database"):
        fewshot.mark_example(store, "Cluster_999", "x", "ann")
    row = fewshot.mark_example(store, "Cluster_2", "Mostly\nshop  codes.", "ann")
    assert (row["verdict"], row["reason"], row["marked_by"]) == ("Unacceptable", "Mostly shop codes.", "ann")
    fewshot.mark_example(store, "Cluster_2", "Shop codes, no descriptions.", "bob")
    assert [(e["reason"], e["marked_by"]) for e in store.examples()] == [("Shop codes, no descriptions.", "bob")]
    assert fewshot.offered_reason(store, "Cluster_2") == "Shop codes, no descriptions."
    assert fewshot.unmark_example(store, "Cluster_2") and store.examples() == []
    assert not fewshot.unmark_example(store, "Cluster_2")


def test_clusters_reviewers_disagree_on_are_not_examples(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_6", A, A, reviewer="ann")
    _decide(store, "Cluster_6", A, U, reviewer="bob")
    assert [c.cluster_id for c in fewshot.candidates(store)] == []
    with pytest.raises(FewShotError, match="reviewers disagree"):
        fewshot.mark_example(store, "Cluster_6", "x", "ann")


# --------------------------------------------------------------------------- suggestion


def _decide_many(store: Store, overrides_per_verdict: int, per_verdict: int) -> dict[str, tuple[Verdict, bool]]:
    """Decide 2 * per_verdict demo clusters; the first `overrides_per_verdict` of each verdict are overrides."""
    truth: dict[str, tuple[Verdict, bool]] = {}
    ids = store.cluster_ids()
    for k, human in enumerate((A, U)):
        for j in range(per_verdict):
            cid = ids[k * per_verdict + j]
            override = j < overrides_per_verdict
            _decide(store, cid, human.other if override else human, human, note=f"why {cid}")
            truth[cid] = (human, override)
    return truth


def test_suggestion_is_balanced_and_prefers_overrides(tmp_path):
    store = _store(tmp_path)
    truth = _decide_many(store, overrides_per_verdict=4, per_verdict=12)

    picks = fewshot.suggest(store, 6)
    assert [c.verdict for c in picks].count(A) == 3 and [c.verdict for c in picks].count(U) == 3
    assert all(truth[c.cluster_id] == (c.verdict, True) for c in picks)

    picks = fewshot.suggest(store, 10)
    assert [c.verdict for c in picks].count(A) == 5
    overrides = {cid for cid, (_, o) in truth.items() if o}
    assert overrides <= {c.cluster_id for c in picks}  # all 8 overrides before any accepted cluster
    for verdict in (A, U):
        same = [c for c in picks if c.verdict is verdict]
        assert [c.overridden for c in same] == [True] * 4 + [False]  # overrides come first

    odd = fewshot.suggest(store, 5)
    assert sorted([c.verdict.value for c in odd]) == ["Acceptable"] * 3 + ["Unacceptable"] * 2 or sorted(
        [c.verdict.value for c in odd]
    ) == ["Acceptable"] * 2 + ["Unacceptable"] * 3
    assert len({c.cluster_id for c in picks}) == len(picks)


def test_suggestion_fills_from_the_other_verdict_when_one_is_short(tmp_path):
    store = _store(tmp_path)
    ids = store.cluster_ids()
    for cid in ids[:8]:
        _decide(store, cid, A, A)
    for cid in ids[8:10]:
        _decide(store, cid, A, U, note="bad")
    picks = fewshot.suggest(store, 6)
    assert sorted(c.verdict.value for c in picks) == ["Acceptable"] * 4 + ["Unacceptable"] * 2
    assert fewshot.suggest(store, 50) and len(fewshot.suggest(store, 50)) == 10


def _cluster(cid: str, captions: list[str]) -> Cluster:
    return Cluster(cid, tuple(Sample(t) for t in captions[:5]), tuple(Sample(t) for t in captions[5:10]))


def test_suggestion_spreads_across_kinds_not_near_copies(tmp_path):
    store = Store(tmp_path / "kinds.db")
    shoes = [f"Nike Air Max 90 running shoe size {n} white red" for n in range(10)]
    files = [f"IMG_{n:04d}.jpg" for n in range(10)]
    store.import_clusters(
        [_cluster(f"Cluster_{i}", [s.replace("size", f"size {i}") for s in shoes]) for i in range(4)]
        + [_cluster("Cluster_10", files)]
        + [_cluster("Cluster_20", [f"Tour Eiffel, Paris, photo {n}" for n in range(10)])]
        + [_cluster("Cluster_21", [f"Grand Canyon sunrise over the river {n}" for n in range(10)])]
    )
    for i in range(4):  # four near-copies of one product-listing cluster, all overrides
        _decide(store, f"Cluster_{i}", A, U, note="spam listing")
    _decide(store, "Cluster_10", A, U, note="file names")
    _decide(store, "Cluster_20", U, A, note="landmarks")
    _decide(store, "Cluster_21", U, A, note="landscapes")

    picks = [c.cluster_id for c in fewshot.suggest(store, 4) if c.verdict is U]
    assert len(picks) == 2
    assert "Cluster_10" in picks  # the different kind, not a second near-copy of the shoes
    assert sum(p in {"Cluster_0", "Cluster_1", "Cluster_2", "Cluster_3"} for p in picks) == 1


def test_suggest_rejects_k_below_one(tmp_path):
    with pytest.raises(FewShotError, match="at least 1"):
        fewshot.suggest(_store(tmp_path), 0)


# --------------------------------------------------------------------------- prompt versions


def test_versions_are_content_addressed_listed_activated_and_diffed(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_2", A, U, note="Product codes only.")
    _decide(store, "Cluster_3", U, U)
    row = fewshot.create_prompt(store, "v1", ["Cluster_2", "Cluster_3"])
    assert row["version"] == template_version(row["template"])
    assert row["parent"] == default_template().version
    assert [(e["cluster_id"], e["verdict"], e["reason"]) for e in row["examples"]] == [
        ("Cluster_2", "Unacceptable", "Product codes only."),
        ("Cluster_3", "Unacceptable", "model says Unacceptable for Cluster_3"),
    ]
    again = fewshot.create_prompt(store, "v1", ["Cluster_2", "Cluster_3"])
    assert again["version"] == row["version"] and len(store.prompts()) == 2  # the seed and v1
    with pytest.raises(FewShotError, match="already used"):
        fewshot.create_prompt(store, "v1", ["Cluster_3"])

    assert [(p["name"], p["active"]) for p in fewshot.list_prompts(store)] == [("seed", True), ("v1", False)]
    fewshot.activate(store, "v1")
    assert [(p["name"], p["active"]) for p in fewshot.list_prompts(store)] == [("seed", False), ("v1", True)]
    assert fewshot.active_template(store).version == row["version"]

    diff = fewshot.diff_prompts(store, "seed", "v1")
    assert diff.startswith(f"--- seed ({default_template().version})\n+++ v1 ({row['version']})\n")
    assert "\n-Reason: Highly diverse content" in diff and "\n+Reason: Product codes only.\n" in diff
    assert "Key Considerations" not in diff  # unchanged instructions are not in the diff
    assert fewshot.diff_prompts(store, "v1", row["version"]) == ""

    # A version built on the active one by default, or on a file.
    _decide(store, "Cluster_4", A, A)
    child = fewshot.create_prompt(store, "v2", ["Cluster_4"], mode="append")
    assert child["parent"] == row["version"] and len(child["examples"]) == 3
    base = tmp_path / "mine.txt"
    base.write_text(default_template().text.replace("CLIP", "CLIP (ours)"), encoding="utf-8")
    from_file = fewshot.create_prompt(store, "v3", ["Cluster_4"], base=base)
    assert "CLIP (ours)" in from_file["template"]


def test_create_refuses_what_it_cannot_build(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_2", A, U)  # an override with no note: no reason to show
    with pytest.raises(FewShotError, match=r"Cluster_2 has no reason .*fewshot mark Cluster_2"):
        fewshot.create_prompt(store, "x", ["Cluster_2"])
    with pytest.raises(FewShotError, match="Cluster_8 has no agreed human verdict"):
        fewshot.create_prompt(store, "x", ["Cluster_8"])
    with pytest.raises(FewShotError, match="listed twice: Cluster_2"):
        fewshot.create_prompt(store, "x", ["Cluster_2", "Cluster_2"])
    with pytest.raises(FewShotError, match="--mode"):
        fewshot.create_prompt(store, "x", ["Cluster_2"], mode="merge")
    assert store.prompts() == []  # nothing written, not even the seed


def test_preview_renders_a_cluster(tmp_path):
    store = _store(tmp_path)
    text = fewshot.preview(store, "seed", "Cluster_0")
    assert text == default_template().render(next(store.iter_clusters(["Cluster_0"])))


# --------------------------------------------------------------------------- guidelines


def test_decisions_record_the_guideline_and_old_ones_are_queued(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_0", A, A)  # before any guideline
    v1 = fewshot.set_guideline(store, "Keep descriptive captions.")
    _decide(store, "Cluster_1", A, A)
    assert {d.cluster_id: d.guideline for d in store.decisions()} == {"Cluster_0": None, "Cluster_1": v1}
    assert [r["cluster_id"] for r in fewshot.stale_labels(store)] == ["Cluster_0"]

    v2 = fewshot.set_guideline(store, "Keep descriptive captions. Drop product listings.")
    assert v2 != v1 and fewshot.current_guideline_text(store).endswith("product listings.")
    assert [r["cluster_id"] for r in fewshot.stale_labels(store)] == ["Cluster_0", "Cluster_1"]
    assert fewshot.queue_stale(store) == 2
    assert [r["cluster_id"] for r in store.pending_rechecks()] == ["Cluster_0", "Cluster_1"]

    _decide(store, "Cluster_1", A, U)  # the second look
    assert [r["cluster_id"] for r in store.pending_rechecks()] == ["Cluster_0"]
    assert [r["cluster_id"] for r in fewshot.stale_labels(store)] == ["Cluster_0"]
    assert {g["version"]: g["n_labels"] for g in store.guidelines()} == {v1: 0, v2: 1}


# --------------------------------------------------------------------------- CLI


def _run(db: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--db", str(db)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_suggest_mark_create_list_show_diff_activate(tmp_path):
    store = _store(tmp_path)
    _decide_many(store, overrides_per_verdict=2, per_verdict=4)
    db = store.path
    code, out, _ = _run(db, "fewshot", "suggest", "--k", "4")
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("Cluster_")]
    assert len(lines) == 4 and all(" yes " in ln for ln in lines)
    suggested = re.search(r"--examples (\S+)", out).group(1)

    code, out, _ = _run(db, "fewshot", "mark", "Cluster_0", "--reason", "Camera file names.", "--reviewer", "ann")
    assert code == 0 and "Camera file names." in out
    code, out, _ = _run(db, "prompt", "create", "--name", "ours", "--examples", suggested)
    assert code == 0 and "with 4 example(s)" in out
    code, out, _ = _run(db, "prompt", "list")
    assert re.search(r"^\* seed ", out, re.M) and re.search(r"^  ours ", out, re.M)
    code, out, _ = _run(db, "prompt", "activate", "ours")
    assert code == 0
    code, out, _ = _run(db, "prompt", "list")
    assert re.search(r"^\* ours ", out, re.M)
    code, out, _ = _run(db, "prompt", "diff", "seed", "ours")
    assert code == 0 and out.startswith("--- seed")
    code, out, _ = _run(db, "prompt", "show", "ours", "--cluster", "Cluster_30")
    assert code == 0 and out.rstrip().endswith("Classification:") and "### Example 4" in out


def test_cli_errors_are_one_line_and_change_nothing(tmp_path):
    store = _store(tmp_path)
    _decide(store, "Cluster_2", A, U)
    before = store.prompts()
    code, out, err = _run(store.path, "prompt", "create", "--name", "x", "--examples", "Cluster_2,Cluster_77")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: cluster Cluster_2 has no reason")
    code, _, err = _run(store.path, "prompt", "show", "nope")
    assert code == 1 and err.startswith("error: no prompt named 'nope'")
    code, _, err = _run(store.path, "fewshot", "mark", "Cluster_9", "--reviewer", "ann")
    assert code == 1 and "Cluster_9 has no decision yet" in err
    assert store.prompts() == before and store.examples() == []
