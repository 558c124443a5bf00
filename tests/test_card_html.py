"""The card's escaped HTML (clusterqc/ui/card_html.py): hostile text goes in, the same characters come out."""

from __future__ import annotations

import pytest
from card_text import plain_text

from clusterqc.model import Proposal, Sample, Verdict
from clusterqc.ui import card_html

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</div></div><script>alert(1)</script>",
    "\"><svg onload=alert(1)>",
    "' onmouseover='alert(1)",
    "&amp; &lt;b&gt; already-escaped entities",
    "**bold** [link](http://example.com) `code`",
    "line one\nline two\twith a tab",
    "<!-- a comment --> <![CDATA[x]]>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_caption_comes_back_as_exactly_its_characters(text: str) -> None:
    markup = card_html.samples_html([("Closest", [Sample(text)], 0)], [["file name"]], max_chars=400)
    assert "<img" not in markup and "<script" not in markup and "<svg" not in markup and "<!--" not in markup
    assert plain_text(markup) == ["Closest", f"1. {text}", "file name"]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_proposal_reason_and_judge_come_back_as_exactly_their_characters(text: str) -> None:
    proposal = Proposal("C_1", judge=text, prompt_version="v1", verdict=Verdict.ACCEPTABLE, reason=text)
    markup = card_html.proposals_html([proposal], answered_id=None)
    assert "<img" not in markup and "<script" not in markup and "<svg" not in markup
    assert plain_text(markup) == ["Acceptable", f"{text} · prompt v1", text]


def test_long_captions_are_cut_and_scores_are_tagged() -> None:
    markup = card_html.sample_html(3, Sample("x" * 500, clip_score=0.2431), [], max_chars=400)
    assert plain_text(markup) == ["3. " + "x" * 400 + " …", "CLIP 24.3"]
