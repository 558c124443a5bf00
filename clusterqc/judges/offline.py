"""The offline judge: the seed prompt's six considerations scored from the caption text alone.

It needs no endpoint, is deterministic and takes milliseconds per cluster, so a newcomer
sees proposals at once and a team without an LLM still gets a first pass. It is deliberately
plain: every point it scores is evidence a reviewer can check on the screen ("4 of 10
captions are file names"), and the same per-sample findings are shown beside each sample.

Scoring (each consideration contributes to one score; 1.0 or more is Unacceptable):
- quality: captions that carry no description (file names, placeholders such as
  "Image description", bare URLs, empty, garbled text) - 40% of the samples alone tip it;
- repetition: near-duplicate captions (same text once case, punctuation and numbers are
  ignored, or a difflib ratio >= 0.9) - 60% alone tip it;
- ethics: captions with an explicit term from a small list - two alone tip it;
- diversity: a low type-token ratio over all captions adds up to 0.6;
- informative content: a median of under two words per caption adds 0.3.
Long-tail knowledge cannot be judged from text statistics; it is left to reviewers.
"""

from __future__ import annotations

import difflib
import json
import re
import statistics
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass

import ftfy.badness

from clusterqc.model import Cluster, Proposal, Verdict

NAME = "offline"
PROMPT_VERSION = "offline-v1"  # bump whenever a rule or threshold below changes
THRESHOLD = 1.0
UNUSABLE_TIP = 0.4
DUPLICATE_TIP = 0.6
EXPLICIT_TIP = 2
DUPLICATE_RATIO = 0.9
FUZZY_DISTINCT = 64  # distinct captions compared pairwise with difflib
FUZZY_CHARS = 512  # characters of each caption that difflib looks at
LOW_DIVERSITY = 0.4
DIVERSITY_WEIGHT = 0.6
TERSE_MEDIAN_WORDS = 2
TERSE_WEIGHT = 0.3

_EXTENSIONS = r"jpe?g|png|gif|webp|bmp|tiff?|heic|svg|avif|jfif|mp4|mov|pdf"
_FILE_EXT = re.compile(rf"\.(?:{_EXTENSIONS})\s*$", re.IGNORECASE)
_CAMERA = re.compile(
    r"^_?(?:img|dsc[nf]?|dcim|pict?|pxl|mvimg|vid|wp|photo|image|screenshot|scan|p)[_\-]*\d+[\w\-]*$",
    re.IGNORECASE,
)
_COPY_SUFFIX = re.compile(r"(?:\s*\(\d+\))?(?:\s*-\s*copy(?:\s*\(\d+\))?)?\s*$", re.IGNORECASE)
_URL = re.compile(r"^\s*(?:https?://|www\.)\S+\s*$", re.IGNORECASE)
_HTML_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z]+);", re.IGNORECASE)
_CREDIT_ONLY = re.compile(r"^(?:photo|image|picture|pic)s?\s+(?:by|credit|courtesy(?:\s+of)?)\b", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
_PLACEHOLDERS = frozenset(
    p.strip()
    for p in """
    image description|enter image description here|image|images|photo|photos|picture|pictures|pic|img
    untitled|untitled image|untitled photo|untitled design|untitled picture|no title|no description
    description|image may contain|gallery image|print image|featured image|thumbnail|thumb|default
    placeholder|image placeholder|no image|no image available|image not available|image not found
    photo not available|image unavailable|logo|icon|avatar|identicon|alt|alt text|null|none|undefined
    na|n a|click to enlarge|click here|view image|view larger image|loading|unnamed|unknown|copy
    screenshot|screen shot|product image|main image|banner|slide|slider|media|attachment|file
    listing image|customer image|profile picture|profile photo|cover image|header image|post image
    olympus digital camera|digital camera|sony dsc|camera|image title|title|caption|insert image here
    """.replace("\n", "|").split("|")
    if p.strip()
)
EXPLICIT_TERMS = frozenset(
    """porn porno pornographic pornography xxx nsfw nude nudes nudity naked hentai erotic erotica
    fetish bdsm milf blowjob handjob camgirl onlyfans sex""".split()
)


def _normalise(text: str) -> str:
    """Case, accents' forms, punctuation and numbers ignored: `IMG_001.jpg` ~ `img 002 jpg`."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"\d+", "0", text)
    return " ".join(_WORD.findall(text.replace("_", " ")))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.replace("_", " "))


_META_LINE = re.compile(r"^\s*[^\W\d_][\w .-]{0,24}:\s*(.*?)\s*$")


def _is_file_listing(text: str) -> bool:
    """A gallery's metadata block (`Name: O1 053.jpg` / `Views: 406` / `Size: 64.4 KB`): every
    line a `Label: value` pair and one value a file name. A description with a file line under
    it is not one (its first line has no label)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    values = [m.group(1) if (m := _META_LINE.match(line)) else None for line in lines]
    return all(v is not None for v in values) and any(v and is_file_name(v) for v in values)


def is_file_name(text: str) -> bool:
    """A caption that is a file name or camera/ID code rather than a description."""
    if "\n" in text.strip():
        return _is_file_listing(text)
    stripped = text.strip()
    core = _COPY_SUFFIX.sub("", stripped)
    if _FILE_EXT.search(stripped) or _CAMERA.match(core):
        return True
    if not core or re.search(r"\s", core):
        return False
    digits = sum(ch.isdigit() for ch in core)
    return digits > 0 and len(core) >= 4 and ("_" in core or digits / len(core) >= 0.5 or core != stripped)


def is_placeholder(text: str) -> bool:
    """Boilerplate alt text a CMS or uploader puts in place of a description."""
    norm = " ".join(re.sub(r"\d+", " ", _normalise(text)).split())
    return norm in _PLACEHOLDERS or bool(_CREDIT_ONLY.match(text.strip()) and len(_words(text)) <= 5)


def is_garbled(text: str) -> bool:
    """Replacement characters or mojibake (UTF-8 read as Latin-1/cp1252), as ftfy detects it."""
    return "\ufffd" in text or ftfy.badness.is_bad(text)


def explicit_terms(text: str) -> tuple[str, ...]:
    return tuple(sorted({w for w in (w.casefold() for w in _WORD.findall(text)) if w in EXPLICIT_TERMS}))


@dataclass(frozen=True)
class SampleFeatures:
    """What the judge noticed about one caption; `hints` is what the Review page shows."""

    words: int
    empty: bool
    file_name: bool
    placeholder: bool
    url: bool
    garbled: bool
    html_entities: bool
    explicit: tuple[str, ...]
    duplicate_of: int | None  # 1-based number of the first sample it nearly repeats
    has_duplicates: bool

    @property
    def unusable(self) -> bool:
        """Carries no description a CLIP model could learn from."""
        return self.empty or self.file_name or self.placeholder or self.url or self.garbled

    def hints(self) -> list[str]:
        flags = [
            (self.empty, "empty"),
            (self.file_name, "file name"),
            (self.placeholder, "placeholder"),
            (self.url, "URL"),
            (self.garbled, "mojibake / replacement characters"),
            (self.html_entities, "HTML entities"),
            (not self.empty and self.words <= 1 and not (self.file_name or self.placeholder), "one word"),
        ]
        out = [label for on, label in flags if on]
        if self.explicit:
            out.append("explicit term: " + ", ".join(self.explicit))
        if self.duplicate_of is not None:
            out.append(f"duplicate of #{self.duplicate_of}")
        elif self.has_duplicates:
            out.append("has near-duplicates")
        return out


@dataclass(frozen=True)
class ClusterFeatures:
    """The evidence for one cluster and how much each consideration weighs."""

    samples: tuple[SampleFeatures, ...]
    lexical_diversity: float
    median_words: float
    contributions: dict[str, float]

    @property
    def score(self) -> float:
        return round(sum(self.contributions.values()), 3)

    @property
    def verdict(self) -> Verdict:
        return Verdict.UNACCEPTABLE if self.score >= THRESHOLD else Verdict.ACCEPTABLE

    def count(self, attribute: str) -> int:
        return sum(bool(getattr(s, attribute)) for s in self.samples)

    @property
    def duplicates(self) -> int:
        """Samples that belong to a group of near-duplicates (the first of each group included)."""
        return sum(s.duplicate_of is not None or s.has_duplicates for s in self.samples)


def _duplicate_groups(texts: list[str]) -> list[int]:
    """For each text, the index of the first text in its near-duplicate group (itself if alone).

    Exact duplicates (after normalising) are grouped by hashing, in linear time. The fuzzy
    difflib pass then compares only the first `FUZZY_DISTINCT` distinct texts, each cut to
    `FUZZY_CHARS` characters: a real cluster shows 10 samples, and a hostile one of 10,000
    samples or 1 MB captions must still be judged in milliseconds, not hours.
    """
    norms = [_normalise(t) for t in texts]
    first_of: dict[str, int] = {}
    parent = [first_of.setdefault(n, i) if n else i for i, n in enumerate(norms)]
    reps = [i for i, n in enumerate(norms) if n and parent[i] == i][:FUZZY_DISTINCT]

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for x, i in enumerate(reps):
        for j in reps[x + 1 :]:
            if root(i) != root(j) and _similar(norms[i][:FUZZY_CHARS], norms[j][:FUZZY_CHARS]):
                parent[max(root(i), root(j))] = min(root(i), root(j))
    return [root(i) for i in range(len(texts))]


def _similar(a: str, b: str) -> bool:
    """difflib ratio >= 0.9; the length bound (difflib's real_quick_ratio) first, as building a matcher is the cost."""
    if not a or not b or 2 * min(len(a), len(b)) / (len(a) + len(b)) < DUPLICATE_RATIO:
        return False
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return matcher.quick_ratio() >= DUPLICATE_RATIO and matcher.ratio() >= DUPLICATE_RATIO


def _sample_features(texts: list[str]) -> tuple[SampleFeatures, ...]:
    groups = _duplicate_groups(texts)
    group_sizes = Counter(groups)
    out = []
    for i, text in enumerate(texts):
        first = groups[i]
        out.append(
            SampleFeatures(
                words=len(_words(text)),
                empty=not _WORD.search(text),
                file_name=is_file_name(text),
                placeholder=is_placeholder(text) and not is_file_name(text),
                url=bool(_URL.match(text)),
                garbled=is_garbled(text),
                html_entities=bool(_HTML_ENTITY.search(text)),
                explicit=explicit_terms(text),
                duplicate_of=first + 1 if first != i else None,
                has_duplicates=first == i and group_sizes[i] > 1,
            )
        )
    return tuple(out)


def _lexical_diversity(texts: list[str]) -> float:
    """Distinct words over all words (type-token ratio) across the cluster's captions."""
    tokens = [w for t in texts for w in _normalise(t).split()]
    return len(set(tokens)) / len(tokens) if tokens else 0.0


def cluster_features(cluster: Cluster) -> ClusterFeatures:
    texts = [s.text for s in cluster.samples]
    samples = _sample_features(texts)
    n = max(len(samples), 1)
    diversity = _lexical_diversity(texts)
    median = float(statistics.median([s.words for s in samples])) if samples else 0.0
    dupes = sum(s.duplicate_of is not None or s.has_duplicates for s in samples)
    contributions = {
        "quality": sum(s.unusable for s in samples) / n / UNUSABLE_TIP,
        "repetition": dupes / n / DUPLICATE_TIP,
        "ethics": sum(bool(s.explicit) for s in samples) / EXPLICIT_TIP,
        "diversity": max(0.0, (LOW_DIVERSITY - diversity) / LOW_DIVERSITY) * DIVERSITY_WEIGHT,
        "informative": TERSE_WEIGHT if median < TERSE_MEDIAN_WORDS else 0.0,
    }
    return ClusterFeatures(samples, round(diversity, 3), median, {k: round(v, 3) for k, v in contributions.items()})


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def metrics_text(features: ClusterFeatures) -> str:
    """The numbers behind a verdict, most telling first, and the score they add up to.

    Shown on hover beside the reason and kept in the proposal's raw JSON (`metrics`); never the
    reason itself, which a few-shot prompt would teach the model to imitate.
    """
    n = len(features.samples)
    parts = []
    found = [(features.count(attr), label) for attr, label, _ in _KINDS if features.count(attr)]
    if found:
        first, *rest = found
        parts.append(f"{first[0]} of {n} captions are {first[1]}" + "".join(f", {c} are {lab}" for c, lab in rest))
    if features.duplicates:
        parts.append(f"{features.duplicates} {_plural(features.duplicates, 'is a near-duplicate', 'are near-duplicates of each other')}")
    explicit = sorted({t for s in features.samples for t in s.explicit})
    if explicit:
        k = features.count("explicit")
        parts.append(f"{k} {_plural(k, 'contains', 'contain')} explicit terms ({', '.join(explicit)})")
    low = features.lexical_diversity < LOW_DIVERSITY
    parts.append(f"lexical diversity {features.lexical_diversity:.2f}{' (low)' if low else ''}")
    parts.append(f"median {features.median_words:g} words per caption{' (terse)' if features.median_words < TERSE_MEDIAN_WORDS else ''}")
    entities = features.count("html_entities")
    if entities:
        parts.append(f"{entities} with HTML entities")
    if not found and not features.duplicates and not explicit:
        parts.insert(0, "no file names, placeholders, garbled text or near-duplicates")
    text = "; ".join(parts)
    return f"{text[0].upper()}{text[1:]}. Offline score {features.score:.2f} (Unacceptable at {THRESHOLD:.1f})."


# (attribute, plural label for the metrics, (plural, singular) for the plain sentence)
_KINDS = [
    ("file_name", "file names", ("file names", "a file name")),
    ("placeholder", "placeholders", ("placeholder alt text", "placeholder alt text")),
    ("url", "bare URLs", ("bare URLs", "a bare URL")),
    ("empty", "empty", ("empty", "empty")),
    ("garbled", "garbled (mojibake or replacement characters)", ("garbled text", "garbled text")),
]


def _share(k: int, n: int) -> str:
    """How many of the captions, in the words a curator uses."""
    if k == 1:
        return "one"
    if k == n:
        return "all"
    fraction = k / n
    return "nearly all" if fraction >= 0.8 else "most" if fraction >= 0.5 else "many" if fraction >= 0.3 else "a few"


def _findings(features: ClusterFeatures) -> list[tuple[str, str]]:
    """What is wrong with the captions, biggest share first: (how many, what) without numbers."""
    n = max(len(features.samples), 1)
    counted = [(features.count(attr), words) for attr, _, words in _KINDS if features.count(attr)]
    counted.sort(key=lambda kw: -kw[0])
    out = [(_share(k, n), f"is {words[1]}" if k == 1 else f"are {words[0]}") for k, words in counted]
    if features.duplicates:
        out.append((_share(features.duplicates, n), "repeat each other"))
    explicit = sorted({t for s in features.samples for t in s.explicit})
    if explicit:
        k = features.count("explicit")
        out.append((_share(k, n), f"{'uses' if k == 1 else 'use'} explicit terms ({', '.join(explicit)})"))
    if features.median_words < TERSE_MEDIAN_WORDS:
        out.append(("most", "are only a word or two"))
    elif features.lexical_diversity < LOW_DIVERSITY:
        out.append(("", "they reuse the same few words"))
    return out


def _clauses(findings: list[tuple[str, str]], noun: bool) -> str:
    """'most captions are file names, a few repeat each other and one uses explicit terms (...)'."""
    parts = []
    for i, (share, what) in enumerate(findings):
        if not share:
            parts.append(what)
            continue
        name = ("caption" if share == "one" else "captions") if noun and i == 0 else ""
        parts.append(" ".join(w for w in (share, name, what) if w))
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def explain(features: ClusterFeatures) -> str:
    """The reason: one plain sentence a curator would write, with no scores or counts.

    A reviewer reads it beside the samples, and an accepted proposal's reason is offered as a
    few-shot example's reason, so it must read like a curator's judgement, not a metric dump
    (the numbers are in `metrics_text`).
    """
    findings = _findings(features)
    if features.verdict is Verdict.UNACCEPTABLE:
        said = _clauses(findings, noun=True) if findings else "the captions say little about their images"
        return f"{_capital(said)}: {_CONCLUSION[max(features.contributions, key=features.contributions.get)]}."
    terse = ("most", "are only a word or two") in findings
    findings = [f for f in findings if f != ("most", "are only a word or two")]
    start = "Short but real captions" if terse else "Mostly real, descriptive captions"
    if not findings:
        return f"{start}." if terse else "Varied, descriptive captions with no file names, placeholders, garbled text or repeats."
    return f"{start}; {_clauses(findings, noun=False)}, not enough to reject it."


# The end of an Unacceptable reason, after the consideration that weighs most.
_CONCLUSION = {
    "quality": "too little real description to keep",
    "repetition": "too repetitive to keep",
    "ethics": "not suitable to train on",
    "diversity": "too little real description to keep",
    "informative": "too little real description to keep",
}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


class OfflineJudge:
    """Deterministic text heuristics behind the same `judge(cluster) -> Proposal` call as the LLM judge."""

    name = NAME
    model = NAME
    prompt_version = PROMPT_VERSION

    def features(self, cluster: Cluster) -> ClusterFeatures:
        return cluster_features(cluster)

    def sample_hints(self, cluster: Cluster) -> list[list[str]]:
        """Short findings per sample, closest then furthest, for display beside each caption."""
        return [s.hints() for s in cluster_features(cluster).samples]

    def judge(self, cluster: Cluster) -> Proposal:
        start = time.perf_counter()
        features = cluster_features(cluster)
        reason = explain(features)
        raw = json.dumps(
            {
                "verdict": features.verdict.value,
                "reason": reason,
                "metrics": metrics_text(features),
                "score": features.score,
                "contributions": features.contributions,
                "lexical_diversity": features.lexical_diversity,
                "median_words": features.median_words,
                "hints": [s.hints() for s in features.samples],
            },
            ensure_ascii=False,
        )
        return Proposal(
            cluster_id=cluster.id,
            judge=self.name,
            prompt_version=self.prompt_version,
            verdict=features.verdict,
            reason=reason,
            raw=raw,
            latency_s=time.perf_counter() - start,
        )


def metrics_of(raw: str) -> str | None:
    """The numbers behind an offline proposal (its raw JSON's `metrics`), for a hover text;
    None for another judge's raw answer or an older offline proposal that has none."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return None
    metrics = value.get("metrics") if isinstance(value, dict) else None
    return metrics if isinstance(metrics, str) else None


__all__ = ["OfflineJudge", "ClusterFeatures", "SampleFeatures", "cluster_features", "explain", "metrics_text",
           "metrics_of"]
