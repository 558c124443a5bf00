"""The read-only parts of the Review card (samples, proposals) as one escaped HTML element each.

Why HTML at all: a key press redraws the card, and the browser's time to the next card grows
with the number of Streamlit elements in it (each is a React subtree with its own styled
wrappers; badges also run the markdown renderer). Ten captions with their hint tags were ~35
elements; here they are one. bench/bench_review_browser.py measures the difference.

Why this is still inert text: every piece of text from a file or a model goes through
`html.escape` (quotes included) before it is placed between our own fixed tags, so
`<img src=x onerror=alert(1)>` arrives in the page as those characters, never as an element;
Streamlit's DOMPurify pass is a second net, not the first. Our markup carries classes only (the
look is in keys.py's style), no attributes built from data, no links, no scripts.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from clusterqc.evidence import clip_text
from clusterqc.model import Proposal, Sample

CAPTION_CLASS = "cqc-cap"  # one caption; the page script opens a clamped one on click
VERDICT_TONES = {"Acceptable": "green", "Unacceptable": "red"}


def text(value: object) -> str:
    """Untrusted text as HTML that shows exactly these characters."""
    return html.escape(str(value), quote=True)


def _div(cls: str, body: str) -> str:
    return f'<div class="{cls}">{body}</div>'


def _tag(label: str, tone: str) -> str:
    return f'<span class="cqc-tag cqc-{tone}">{text(label)}</span>'


def sample_html(n: int, sample: Sample, hints: Sequence[str], max_chars: int) -> str:
    """Sample number n (1-based): its caption (cut at `max_chars`), its CLIP score and hint tags."""
    caption = sample.text if len(sample.text) <= max_chars else sample.text[:max_chars] + " …"
    tags = "".join(_tag(h, "orange") for h in hints)  # the offline judge's own labels
    score = clip_text(sample.clip_score)
    if score:
        tags = _tag(score, "gray") + tags
    return _div("cqc-sample", _div(CAPTION_CLASS, text(f"{n}. {caption}")) + (_div("cqc-tags", tags) if tags else ""))


def samples_html(
    columns: Iterable[tuple[str, Sequence[Sample], int]], hints: Sequence[Sequence[str]], max_chars: int
) -> str:
    """Columns of (title, samples, number of the first minus one), side by side."""
    parts = []
    for title, items, start in columns:
        rows = "".join(
            sample_html(start + k + 1, s, hints[start + k] if start + k < len(hints) else (), max_chars)
            for k, s in enumerate(items)
        )
        parts.append(_div("cqc-col", _div("cqc-title", text(title)) + rows))
    return _div("cqc-grid", "".join(parts))


def proposal_html(proposal: Proposal, answered: bool) -> str:
    """One proposal: verdict tag, judge and prompt (marked when the keys answer it), reason, parse error."""
    if proposal.verdict is None:
        tag = _tag("Unparsed", "gray")
    else:
        tag = _tag(proposal.verdict.value, VERDICT_TONES[proposal.verdict.value])
    mark = " (Accept / Override answer this one)" if answered else ""
    body = _div("cqc-prop-head", tag + f'<span>{text(f"{proposal.judge} · prompt {proposal.prompt_version}{mark}")}</span>')
    if proposal.reason:
        body += _div("cqc-reason", text(proposal.reason))
    if proposal.verdict is None:
        body += _div("cqc-reason", text(f"Could not parse: {proposal.parse_error or 'no verdict found'}"))
    return _div("cqc-prop cqc-answered" if answered else "cqc-prop", body)


def proposals_html(proposals: Sequence[Proposal], answered_id: int | None) -> str:
    return "".join(proposal_html(p, answered_id is not None and p.id == answered_id) for p in proposals)
