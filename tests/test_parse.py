"""The parser against a corpus of realistic answers, plus the properties it must never break."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterqc.model import Verdict
from clusterqc.parse import ParseResult, parse_answer


def _load_corpus():
    """Loaded by path so the tests work whether or not tests/ is a package."""
    path = Path(__file__).with_name("parse_corpus.py")
    spec = importlib.util.spec_from_file_location("clusterqc_parse_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.CORPUS


CORPUS = _load_corpus()


def test_corpus_is_large_and_covers_both_verdicts_and_failures():
    verdicts = [case.verdict for case in CORPUS]
    assert len(CORPUS) >= 30
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    assert verdicts.count(Verdict.ACCEPTABLE) >= 5
    assert verdicts.count(Verdict.UNACCEPTABLE) >= 5
    assert verdicts.count(None) >= 5


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_corpus(case):
    result = parse_answer(case.text)
    assert result.verdict == case.verdict, result
    if case.reason is not None:
        assert result.reason == case.reason
    if case.verdict is None:
        assert result.error and case.error.lower() in result.error.lower(), result.error
    else:
        assert result.error is None


def test_unparsed_answer_keeps_the_reason_for_reviewers():
    result = parse_answer("Reason: captions are hashes.\nClassification: Maybe")
    assert result == ParseResult(None, "captions are hashes.", result.error)
    assert "'Maybe'" in result.error


def test_strict_mode_needs_a_classification_line():
    assert parse_answer("Unacceptable", strict=True).verdict is None
    assert parse_answer('{"classification": "Acceptable"}', strict=True).verdict is None
    assert parse_answer("Reason: x\n**Classification:** Acceptable", strict=True).verdict is Verdict.ACCEPTABLE


def test_none_is_an_empty_answer():
    assert parse_answer(None) == ParseResult(None, "", "empty answer")


@pytest.mark.parametrize("verdict", list(Verdict))
@settings(max_examples=60, deadline=None)
@given(reason=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=80))
def test_seed_format_round_trips_any_reason(verdict, reason):
    """Whatever a reason says (even 'acceptable'), the Classification line decides."""
    result = parse_answer(f"Reason: {reason}\nClassification: {verdict.value}")
    assert result.verdict is verdict
    assert result.error is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_never_crashes_and_verdict_xor_error(text):
    result = parse_answer(text)
    assert (result.verdict is None) == (result.error is not None)
