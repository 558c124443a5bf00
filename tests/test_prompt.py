"""Prompt templates: the seed renders as the original pipeline did, bad templates are refused."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest

from clusterqc.model import Cluster, Sample, Verdict
from clusterqc.prompt import (
    SYSTEM_MESSAGE,
    FewShotExample,
    PromptTemplate,
    TemplateError,
    default_template,
    example_block,
    load_template,
    save_template,
    template_examples,
    validate_template,
    with_examples,
)
from clusterqc.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "cluster_samples_luvdatacomp_format.json"
SEED_FILE = Path(__file__).parents[1] / "clusterqc" / "prompts" / "seed.txt"


def _cluster(cid: str) -> Cluster:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))[cid]
    return Cluster(
        cid,
        tuple(Sample(t) for t in data["closest_samples"]),
        tuple(Sample(t) for t in data["furthest_samples"]),
    )


def test_default_template_is_the_seed_file_verbatim():
    template = default_template()
    assert template.text == SEED_FILE.read_text(encoding="utf-8")
    assert template.name == "seed"
    assert re.fullmatch(r"[0-9a-f]{12}", template.version)


def test_render_matches_the_original_pipelines_str_format():
    """The original pipeline did `prompt.format(closest_samples=json.dumps(..., indent=2), ...)`."""
    cluster = _cluster("Cluster_25")
    seed = SEED_FILE.read_text(encoding="utf-8")
    expected = seed.format(
        closest_samples=json.dumps(cluster.closest_texts(), ensure_ascii=False, indent=2),
        furthest_samples=json.dumps(cluster.furthest_texts(), ensure_ascii=False, indent=2),
    )
    rendered = default_template().render(cluster)
    assert rendered == expected
    assert "{{" not in rendered and "}}" not in rendered
    assert "Eve 님이 좋아한 장소." in rendered  # non-ASCII kept, not \u-escaped


def test_rendered_cluster_block_is_valid_json():
    rendered = default_template().render(_cluster("Cluster_60"))
    block = rendered.split("## Cluster to Classify")[1].split("```json\n")[1].split("\n```")[0]
    assert json.loads(block)["furthest_samples"][-1] == "photo_1 (7) - Copy"


def test_captions_with_braces_are_not_format_fields():
    cluster = Cluster("c", (Sample("{closest_samples} {0} }{"),), (Sample("x"),))
    assert '"{closest_samples} {0} }{"' in default_template().render(cluster)


def test_messages_are_system_then_user():
    cluster = _cluster("Cluster_60")
    messages = default_template().messages(cluster)
    assert messages == [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": default_template().render(cluster)},
    ]
    assert SYSTEM_MESSAGE == "You are a helpful assistant that classifies image-text clusters for CLIP model training."


def test_version_is_a_content_hash():
    a = PromptTemplate("{closest_samples}{furthest_samples}")
    assert PromptTemplate("{closest_samples}{furthest_samples}", name="other").version == a.version
    assert PromptTemplate("x {closest_samples}{furthest_samples}").version != a.version


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\nb {closest_samples}\n{furhtest_samples}", "line 3: unknown placeholder {furhtest_samples}"),
        ("{closest_samples}\n{furthest_samples}\n{}", "line 3: unknown placeholder {}"),
        ("{closest_samples:>10}{furthest_samples}", "line 1: unknown placeholder {closest_samples:>10}"),
        ("{closest_samples}", "missing placeholder {furthest_samples}"),
        ("nothing here", "missing placeholder {closest_samples} and {furthest_samples}"),
        ('{closest_samples}{furthest_samples}\n\n{"a": 1}', 'line 3: unknown placeholder {"a": 1}'),
        ("{closest_samples}{furthest_samples}\n}", "line 2: single '}'"),
        ("{closest_samples}{furthest_samples}\n{", "line 2: single '{'"),
    ],
)
def test_invalid_templates_are_rejected_with_place(text, message):
    with pytest.raises(TemplateError) as info:
        validate_template(text)
    assert message in str(info.value)
    with pytest.raises(TemplateError):
        PromptTemplate(text)


def test_validator_agrees_with_str_format_on_what_it_accepts():
    for text in ["{{}}{closest_samples}{{{furthest_samples}}}", default_template().text]:
        validate_template(text)
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        assert fields == {"closest_samples", "furthest_samples"}


def test_load_template_names_the_file(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("Classify:\n{closest_samples}\n{furthest_samples}\n", encoding="utf-8")
    template = load_template(good)
    assert template.text.startswith("Classify:")

    bad = tmp_path / "bad.txt"
    bad.write_text("{closest_samples}\n{furthest}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad\.txt: line 2: unknown placeholder \{furthest\}"):
        load_template(bad)
    with pytest.raises(TemplateError, match=r"missing\.txt: no such file"):
        load_template(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 {closest_samples}{furthest_samples}".encode("latin-1"))
    with pytest.raises(TemplateError, match=r"latin\.txt: not UTF-8"):
        load_template(latin)


def test_save_template_stores_by_version_once(tmp_path):
    with Store(tmp_path / "db.sqlite") as store:
        seed = default_template()
        version = save_template(store, seed)
        assert version == seed.version
        assert save_template(store, seed) == version
        assert len(store.prompts()) == 1
        row = store.get_prompt("seed")
        assert row["template"] == seed.text and row["version"] == version

        example = FewShotExample(("a",), ("b",), "short", Verdict.UNACCEPTABLE, "Cluster_1")
        child = with_examples(seed, [example], name="seed")  # name already taken by the seed
        child_version = save_template(store, child, examples=[example], parent=version)
        stored = store.get_prompt(child_version)
        assert stored["parent"] == version
        assert stored["examples"] == [example.to_dict()]
        assert store.get_prompt("seed")["version"] == version
        assert len(store.prompts()) == 2


def test_seed_examples_re_render_byte_identically():
    seed = default_template()
    examples = template_examples(seed)
    assert [e.verdict for e in examples] == [Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE, Verdict.ACCEPTABLE]
    section = seed.text.split("## Examples\n")[1].split("## Cluster to Classify")[0]
    blocks = [example_block(i, e.closest, e.furthest, e.reason, e.verdict) for i, e in enumerate(examples, 1)]
    assert "".join(b + "\n" for b in blocks) == section
    for block in blocks:
        assert block in seed.text
    assert with_examples(seed, examples).text == seed.text


def test_example_block_exact_format():
    block = example_block(4, ["IMG_1.jpg"], ["a {brace}"], "Two\nlines.", "unacceptable")
    assert block == (
        "### Example 4\nCluster data:\n```json\n{{\n"
        '  "closest_samples": [\n    "IMG_1.jpg"\n  ],\n'
        '  "furthest_samples": [\n    "a {{brace}}"\n  ]\n}}\n```\n'
        "Reason: Two lines.\nClassification: Unacceptable\n"
    )


def test_with_examples_replace_and_append():
    seed = default_template()
    new = FewShotExample(("Image description",) * 5, ("enter image description here",) * 5, "Placeholders {x}.", Verdict.UNACCEPTABLE)

    replaced = with_examples(seed, [new, new])
    assert [e.reason for e in template_examples(replaced)] == ["Placeholders {x}.", "Placeholders {x}."]
    assert "### Example 3" not in replaced.text
    assert replaced.text.split("## Examples")[0] == seed.text.split("## Examples")[0]
    assert replaced.text.split("## Cluster to Classify")[1] == seed.text.split("## Cluster to Classify")[1]

    appended = with_examples(seed, [new], mode="append")
    examples = template_examples(appended)
    assert len(examples) == 4 and examples[:3] == template_examples(seed) and examples[3] == new
    assert "### Example 4\n" in appended.text
    assert appended.text.startswith(seed.text.split("## Cluster to Classify")[0])

    cluster = Cluster("c", (Sample("x"),), (Sample("y"),))
    assert "Placeholders {x}." in appended.render(cluster)


def test_with_examples_needs_an_examples_section():
    with pytest.raises(TemplateError, match="## Examples"):
        with_examples(PromptTemplate("{closest_samples}{furthest_samples}"), [])
