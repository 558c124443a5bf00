"""Property-based fuzzing of `parse_answer` and a corpus of hostile answer shapes.

A model's answer comes from a remote endpoint we do not control: it may be huge, nested,
binary, cut off or adversarial. The parser's promises, for ANY text:
- it returns (never raises, never hangs), and `verdict is None` exactly when `error` says why;
- it never invents a verdict: a verdict it returns is named somewhere in the text;
- it never invents a reason: every word of the reason comes from the text;
- a final `Classification:` line decides, whatever precedes it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterqc.model import Verdict
from clusterqc.parse import parse_answer, strip_thinking

# Pieces of real answers and of things that go wrong with them.
FRAGMENTS = [
    "Reason:", "Classification:", "Final Classification:", "Verdict =", "### Classification",
    "**Classification:** ", "Acceptable", "Unacceptable", "not acceptable", "High Value", "Low-Value",
    "acceptable.", "UNACCEPTABLE!!", "<think>", "</think>", "<thinking>", "```json", "```",
    '{"classification": "Acceptable", "reason": "ok"}', '{"verdict": ', '{"label": {"x": ', "}", "[", "]",
    "\x00", "\ufffd", "\u202e", "\u200b", "\r\n", "\n", "\n\n", "- ", "1. ", "> ", "#", "* ", "`", "__",
    "I classify this cluster as", "is", "as", "  ", "\t", "<script>alert(1)</script>", "![x](http://e.x/i.png)",
    "\\", '"', "\u00e9", "\u4e2d\u6587", "\U0001f600", "\ud7ff", "Classification: Acceptable / Unacceptable",
]

answers = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=40
).map("".join)


def _normalised(text: str) -> str:
    """The text as a reader sees the words: no markdown marks, single spaces, lower case."""
    text = re.sub(r"[*_`]", "", text).lower().replace("-", " ")
    return re.sub(r"\s+", " ", text)


def _names(text: str, verdict: Verdict) -> bool:
    """An independent oracle: does the text name this verdict (in either vocabulary)?"""
    t = _normalised(text)
    if verdict is Verdict.UNACCEPTABLE:
        return bool(re.search(r"unacceptable|(?:not|non|in|un) ?acceptable|low ?value|not high ?value", t))
    return bool(re.search(r"(?<!un)acceptable|high ?value", t))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers, st.booleans())
def test_any_answer_returns_without_inventing_a_verdict(text: str, strict: bool) -> None:
    result = parse_answer(text, strict=strict)
    assert (result.verdict is None) == (result.error is not None)
    assert isinstance(result.reason, str)
    if result.verdict is not None:
        assert _names(text, result.verdict), f"{result.verdict} invented from {text!r}"


@settings(max_examples=800, deadline=None)
@given(answers)
def test_reason_words_come_from_the_answer(text: str) -> None:
    reason = parse_answer(text).reason
    plain = re.sub(r"[*_`]", "", strip_thinking(text))  # <think> blocks are dropped whole, by design
    for word in reason.split():
        assert re.sub(r"[*_`]", "", word) in plain, f"{word!r} is not in the answer"


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300).filter(lambda s: "final" not in s.lower()), st.sampled_from(list(Verdict)))
def test_a_final_classification_line_decides(prefix: str, verdict: Verdict) -> None:
    result = parse_answer(f"{prefix}\nFinal Classification: {verdict.value}")
    assert result.verdict is verdict


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from(["classification", "verdict", "label", "reason", "x"]))
def test_arbitrary_json_answers(value: object, key: str) -> None:
    text = "Here you go:\n" + json.dumps({key: value, "reason": "because"}) + "\nthanks"
    result = parse_answer(text)
    assert (result.verdict is None) == (result.error is not None)
    if result.verdict is not None:
        assert _names(text, result.verdict)


# --------------------------------------------------------------------------- hostile shapes

DEPTH = 100_000
HOSTILE: dict[str, str] = {
    "1 MB of prose then a verdict": "lorem ipsum " * 90_000 + "\nClassification: Acceptable",
    "1 MB without newlines": "a" * 1_000_000,
    "NUL bytes everywhere": "Reason: a\x00b\x00\nClassification:\x00 Unacceptable\x00",
    "deeply nested JSON object": '{"classification":' * DEPTH + '"Acceptable"' + "}" * DEPTH,
    "deeply nested JSON array": '{"classification": ' + "[" * DEPTH + "]" * DEPTH + "}",
    "200,000 opening braces": "{" * 200_000,
    "50,000 unclosed think tags": "<think>" * 50_000,
    "50,000 think blocks": "<think>Acceptable?</think>" * 50_000 + "Classification: Unacceptable",
    "100,000 heading marks": "#" * 100_000 + " Classification: Acceptable",
    "100,000 bullets": "- " * 100_000 + "Classification: Unacceptable",
    "50,000 classification lines": "Classification: Acceptable\n" * 50_000,
    "50,000 'classify as'": "classify as " * 50_000,
    "a million spaces": " " * 1_000_000 + "Acceptable",
    "lone surrogates": "Reason: \ud800\udfff x\nClassification: Acceptable",
    "right-to-left override": "Reason: \u202eelbatpeccanU\u202c\nClassification: Acceptable",
}
EXPECTED: dict[str, str | None] = {
    "1 MB of prose then a verdict": "Acceptable",
    "NUL bytes everywhere": "Unacceptable",
    "50,000 think blocks": "Unacceptable",
    "100,000 heading marks": "Acceptable",
    "100,000 bullets": "Unacceptable",
    "50,000 classification lines": "Acceptable",
    "a million spaces": "Acceptable",
    "lone surrogates": "Acceptable",
    "right-to-left override": "Acceptable",
}
# A hang guard, not a speed assertion: each shape parses in milliseconds to a second when the
# parser is linear, so only quadratic (or worse) behaviour on hostile input can reach it.
HANG_GUARD_S = 30

_CHILD = """
import json, sys
from clusterqc.parse import parse_answer
from tests.test_fuzz_parser import HOSTILE
r = parse_answer(HOSTILE[sys.argv[1]])
print(json.dumps([r.verdict and r.verdict.value, r.error, len(r.reason)]))
"""


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_answer_shapes(name: str, request: pytest.FixtureRequest) -> None:
    """Each shape in its own process, so one that recurses forever or hangs cannot take the run with it."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, name],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            cwd=request.config.rootpath,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"parse_answer did not return within {HANG_GUARD_S} s on {name!r}")
    assert proc.returncode == 0, f"parse_answer raised on {name!r}:\n{proc.stderr[-2000:]}"
    verdict, error, _reason_len = json.loads(proc.stdout)
    assert (verdict is None) == (error is not None)
    if name in EXPECTED:
        assert verdict == EXPECTED[name]
    elif verdict is not None:
        assert _names(HOSTILE[name], Verdict(verdict))
