"""From a model's answer text to (verdict, reason), tolerant of formatting and never guessing.

Real answers to the seed prompt end `Reason: ...` / `Classification: Acceptable`, but models
dress them in `###` headings, `**bold**`, odd case, trailing punctuation, extra prose, JSON,
reasoning models' `<think>` blocks, or the older "High Value" / "Low Value" vocabulary.
All of that is accepted. What is not accepted is an answer whose verdict would have to be
guessed: no verdict, both verdicts named without one clear classification, or classification
lines that contradict each other. Those come back with `verdict=None` and an `error`, so the
store keeps them as unparsed proposals instead of silently counting them as either label.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from clusterqc.model import Verdict

# A verdict term. Negated spellings ("not acceptable", "Not-Acceptable", "non-acceptable",
# "un-acceptable", "in-acceptable", "not high value") are tried before "acceptable"; `\b`
# keeps "acceptable" from matching inside "unacceptable".
_POSITIVE = r"(?:acceptable|high[\s-]*value)"
_TERM = re.compile(
    r"\b(?P<term>(?:not[\s-]+|non[\s-]*|un[\s-]+|in-)" + _POSITIVE
    + r"|unacceptable|inacceptable|acceptable|high[\s-]*value|low[\s-]*value)\b",
    re.IGNORECASE,
)
# Words that make a verdict term uncertain or turn it around when they come before it in the
# same clause: "not really acceptable", "hardly acceptable", "I would not classify this as
# Acceptable", "not unacceptable", "probably acceptable". Such a term gives no verdict.
_QUALIFIERS = (
    r"not|no|never|neither|nor|hardly|scarcely|barely|cannot|without|"
    r"somewhat|mostly|largely|partly|partially|maybe|perhaps|possibly|probably|likely|arguably|"
    r"borderline|marginally|weakly|slightly|almost|nearly|kind\s+of|sort\s+of|semi|seems?|seemingly|"
    r"might|may|could|questionably|potentially|conditionally|tentatively|leaning|lean|unsure|unclear|"
    r"uncertain|hesitant|hesitate|doubt(?:ful)?|debatabl[ey]|if"
)
_QUALIFIER = re.compile(rf"\b(?:{_QUALIFIERS})\b|n[\'\u2019]t\b", re.IGNORECASE)
# ... and what qualifies a term right after it: "Acceptable?", "Acceptable-ish",
# "Acceptable (borderline)", "Acceptable, but barely", "Acceptable or not".
_AFTER = re.compile(
    r"(?:\s*\?|-?ish\b|\s*[(\[]\s*(?:not\s+(?:really|sure|certain|quite)|" + _QUALIFIERS.replace("not|no|", "really|")
    + r")\b|\s*,?\s*(?:but\s+)?(?:just\s+)?(?:barely|hardly|at\s+best|or\s+not|i\s+think|i\s+guess|maybe|perhaps|probably)\b)",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[.;:!?\n]")
_LOOK_BACK = 80  # characters before a term searched for a qualifier (within its clause)
_LABEL_WORDS = r"classification|verdict|final\s+classification|final\s+verdict|final\s+answer|label|decision"
_LABEL = re.compile(rf"^(?P<label>{_LABEL_WORDS})\s*(?:[:=\-\u2013\u2014]\s*|$)(?P<value>.*)$", re.IGNORECASE)
_REASON = re.compile(
    r"^(?P<label>reason|reasons|reasoning|rationale|explanation|justification)\s*(?:[:=\-\u2013\u2014]\s*|$)(?P<value>.*)$",
    re.IGNORECASE,
)
# Prose that states a verdict outright ("I classify this cluster as Unacceptable").
_STATED = re.compile(
    r"\b(?:classif(?:y|ies|ied|ication)|verdict|label(?:l?ed)?|rat(?:e|ed|ing)|mark(?:ed)?|categori[sz](?:e|ed)|deem(?:ed)?)"
    r"\b[^.\n:]{0,40}?\b(?:as|is|:)\s+(?:an?\s+)?[\"'\u201c\u2018]?" + _TERM.pattern,
    re.IGNORECASE,
)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_LINE_PREFIX = re.compile(r"^\s*(?:#{1,6}\s*|>\s*|[-*+\u2022]\s+|\d+[.)]\s+)*")
_VERDICT_KEYS = ("classification", "verdict", "label", "decision", "class", "answer")
_REASON_KEYS = ("reason", "reasoning", "rationale", "explanation", "justification")
_PUNCT = " \t.,;:!?\"'`()[]{}<>*_\u201c\u201d\u2018\u2019"


@dataclass(frozen=True)
class ParseResult:
    """What a model's answer says. `verdict` is None exactly when `error` explains why."""

    verdict: Verdict | None
    reason: str
    error: str | None = None

    @property
    def parsed(self) -> bool:
        return self.verdict is not None


def term_verdict(term: str) -> Verdict:
    """One matched verdict term to its verdict (old High/Low Value vocabulary included)."""
    words = re.sub(r"[\s-]+", "", term.lower())
    if words.startswith(("un", "not", "non", "in", "low")):
        return Verdict.UNACCEPTABLE
    return Verdict.ACCEPTABLE


def _verdicts_in(text: str) -> set[Verdict]:
    return {term_verdict(m["term"]) for m in _TERM.finditer(text)}


def _clause_before(text: str, start: int) -> str:
    """The part of the clause before position `start` (at most _LOOK_BACK characters)."""
    window = text[max(0, start - _LOOK_BACK) : start]
    ends = list(_CLAUSE_END.finditer(window))
    return window[ends[-1].end() :] if ends else window


def _qualified(text: str, start: int, end: int) -> bool:
    """True when the term at text[start:end] is negated or hedged by the words around it."""
    return bool(_QUALIFIER.search(_clause_before(text, start)) or _AFTER.match(text, end))


def _plain(line: str) -> str:
    """A line without markdown dressing: heading marks, quotes, bullets, bold and backticks."""
    line = line.replace("**", "").replace("__", "").replace("`", "")
    line = _LINE_PREFIX.sub("", line)
    return line.strip().strip("*").strip()


def _drop_closed_blocks(text: str) -> str:
    """Remove each <think>...</think> block in one left-to-right pass.

    A lazy `<think>.*?</think>` regex retries from every opening tag, which is quadratic on an
    answer of thousands of unclosed tags; this scan is linear. An opening tag with no closing
    one is left for the caller (the answer was cut off while thinking).
    """
    kept: list[str] = []
    pos = 0
    while (opening := _THINK_OPEN.search(text, pos)) is not None:
        closing = _THINK_CLOSE.search(text, opening.end())
        if closing is None:
            break
        kept.append(text[pos : opening.start()])
        pos = closing.end()
    kept.append(text[pos:])
    return "".join(kept)


def strip_thinking(text: str) -> str:
    """Drop reasoning models' <think>...</think> blocks; they may weigh both verdicts."""
    text = _drop_closed_blocks(text)
    close = list(_THINK_CLOSE.finditer(text))
    if close:  # some servers strip the opening tag and leave only the closing one
        text = text[close[-1].end():]
    opening = _THINK_OPEN.search(text)
    if opening:  # an unclosed block: the answer was cut off while still thinking
        text = text[: opening.start()]
    return text


def _value_verdict(value: str) -> tuple[Verdict | None, str | None]:
    """The verdict on a classification line's value, or why there is none."""
    terms = list(_TERM.finditer(value))
    found = {term_verdict(m["term"]) for m in terms}
    shown = value.strip(_PUNCT) or "(empty)"
    if any(_qualified(value, m.start(), m.end()) for m in terms):
        return None, f"hedged or negated classification {shown!r}: not clearly Acceptable or Unacceptable"
    if len(found) == 1:
        return found.pop(), None
    if found:
        return None, f"ambiguous classification {shown!r}: names both Acceptable and Unacceptable"
    return None, f"unrecognised classification {shown!r} (expected Acceptable or Unacceptable)"


def parse_verdict(value: str | None) -> tuple[Verdict | None, str | None]:
    """A bare classification value ("Acceptable", "**Low Value**.", "Not acceptable") to a verdict.

    For values that already sit in a Classification column (the original pipeline's CSV):
    (verdict, None), or (None, why) when it is empty, unknown or names both verdicts.
    """
    if value is None or not value.strip():
        return None, "empty classification"
    return _value_verdict(value.replace("**", "").replace("`", ""))


_MAX_JSON_STARTS = 50


def _find_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text that carries a verdict key (nested one level at most)."""
    decoder = json.JSONDecoder()
    # Bounded: a hostile answer of 100,000 nested braces must not cost 100,000 decodes, and a
    # nesting deeper than Python's recursion limit is no verdict object anyway.
    for match in itertools.islice(re.finditer(r"\{", text), _MAX_JSON_STARTS):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except RecursionError:
            return None
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for candidate in [obj, *[v for v in obj.values() if isinstance(v, dict)]]:
            keys = {str(k).lower(): k for k in candidate}
            if any(k in keys for k in _VERDICT_KEYS):
                return {k: candidate[orig] for k, orig in keys.items()}
    return None


def _parse_json(obj: dict[str, Any]) -> ParseResult:
    reason = next((str(obj[k]).strip() for k in _REASON_KEYS if obj.get(k) is not None), "")
    value = next(obj[k] for k in _VERDICT_KEYS if k in obj)
    verdict, error = _value_verdict(str(value)) if isinstance(value, str) else (None, None)
    if verdict is None and error is None:
        error = f"unrecognised classification {value!r} in JSON answer"
    return ParseResult(verdict, reason, error)


@dataclass
class _Found:
    verdict: Verdict | None
    error: str | None
    line: int
    final: bool
    rest: str  # what follows the verdict on the same line, a reason of last resort
    used: tuple[int, ...]  # line indexes the label and its value occupy


def _label_value(lines: list[str], i: int, value: str) -> tuple[str, tuple[int, ...]]:
    """A label's value: on its own line, or (for a bare `### Classification` heading) the next one."""
    if value.strip():
        return value, (i,)
    for j in range(i + 1, min(i + 3, len(lines))):
        if lines[j].strip():
            return lines[j], (i, j)
    return "", (i,)


def _classification_lines(lines: list[str]) -> list[_Found]:
    found = []
    for i, line in enumerate(lines):
        match = _LABEL.match(line)
        if not match:
            continue
        value, used = _label_value(lines, i, match["value"])
        verdict, error = _value_verdict(value)
        term = _TERM.search(value)
        rest = value[term.end():].strip(_PUNCT + "-\u2013\u2014") if term and verdict else ""
        found.append(_Found(verdict, error, i + 1, match["label"].lower().startswith("final"), rest, used))
    return found


def _reason_text(lines: list[str], skip: set[int]) -> str:
    """The `Reason:` section, else all prose that is not a classification line."""
    for i, line in enumerate(lines):
        match = _REASON.match(line)
        if not match:
            continue
        body = [match["value"].strip()] if match["value"].strip() else []
        for nxt in lines[i + 1 :]:
            if _LABEL.match(nxt) or _REASON.match(nxt):
                break
            body.append(nxt)
        return _join(body)
    return _join([line for n, line in enumerate(lines) if n not in skip])


def _join(lines: list[str]) -> str:
    return "\n".join(line for line in (ln.strip() for ln in lines) if line).strip()


def _decide(found: list[_Found]) -> tuple[Verdict | None, str | None]:
    """One verdict from all classification lines, or the reason there is none."""
    if any(f.final for f in found):
        found = [f for f in found if f.final]
    verdicts = {f.verdict for f in found if f.verdict is not None}
    if len(verdicts) == 1:
        return verdicts.pop(), None
    if len(verdicts) > 1:
        where = ", ".join(f"{f.verdict.value} (line {f.line})" for f in found if f.verdict)
        return None, f"conflicting classification lines: {where}"
    return None, found[-1].error


def _qualified_statement(body: str, match: re.Match[str]) -> bool:
    """A statement like "I would not classify this as Acceptable": qualified before the verb,
    between the verb and the term, or right after the term."""
    inside = body[match.start() : match.start("term")]
    return bool(_QUALIFIER.search(_clause_before(body, match.start())) or _QUALIFIER.search(inside)
                or _AFTER.match(body, match.end()))


def _fallback(body: str) -> tuple[Verdict | None, str]:
    """No classification line: accept only an answer that is a bare verdict or states one outright."""
    bare = " ".join(_plain(line) for line in body.splitlines() if line.strip()).strip(_PUNCT)
    if _TERM.fullmatch(bare):
        return term_verdict(bare), ""
    statements = list(_STATED.finditer(body))
    plain = [m for m in statements if not _qualified_statement(body, m)]
    stated = {term_verdict(m["term"]) for m in plain}
    if len(stated) == 1 and len(plain) == len(statements):
        return stated.pop(), ""
    mentioned = _verdicts_in(body)
    if len(stated) > 1 or len(mentioned) > 1:
        return None, "ambiguous: names both Acceptable and Unacceptable without a Classification line"
    if statements:
        return None, "hedged or negated statement of a verdict, and no Classification line"
    if mentioned:
        return None, "no Classification line (the text mentions a verdict only in passing)"
    return None, "no verdict found (expected a line 'Classification: Acceptable' or 'Classification: Unacceptable')"


def parse_answer(text: str | None, strict: bool = False) -> ParseResult:
    """Parse one model answer. `strict` accepts only a `Classification:`-style line.

    Precedence: classification lines (a "Final ..." one wins over others), then a JSON
    object with a classification key, then (unless strict) a bare verdict or an outright
    statement like "I classify this cluster as Unacceptable".
    """
    if text is None or not text.strip():
        return ParseResult(None, "", "empty answer")
    body = strip_thinking(text)
    if not body.strip():
        return ParseResult(None, "", "the answer holds only a <think> block, no verdict")
    lines = [_plain(line) for line in body.splitlines()]
    found = _classification_lines(lines)
    if found:
        verdict, error = _decide(found)
        reason = _reason_text(lines, {i for f in found for i in f.used})
        if not reason and verdict is not None:
            reason = next((f.rest for f in found if f.rest), "")
        return ParseResult(verdict, reason, error)
    obj = None if strict else _find_json(body)
    if obj is not None:
        return _parse_json(obj)
    reason = _reason_text(lines, set())
    if strict:
        return ParseResult(None, reason, "no 'Classification:' line")
    verdict, error = _fallback(body)
    if verdict is not None:
        return ParseResult(verdict, "" if _TERM.fullmatch(reason.strip(_PUNCT)) else reason, None)
    return ParseResult(None, reason, error)
