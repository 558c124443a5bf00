"""The learned judge: a classifier trained on the curators' own decisions, proposing the rest.

Why it is built this way:
- An LLM is not always there, and the offline heuristics agree with a curator only modestly.
  What every curator has after an hour is a few dozen decisions; a small local model trained
  on them proposes the other clusters as this curator would (FineWeb-Edu's classifier on LLM
  labels, Prodigy's textcat.teach are the models).
- Features per cluster: TF-IDF word and character n-grams over its samples (hashed, so the
  counts are computed once per training set); the offline judge's signals, computed by the
  offline judge's own functions or read back from its stored answer (file-name share,
  placeholders, duplicates, lexical diversity, caption length) plus the share of each script;
  and the cluster's numbers where present (size, and any numeric field of a `stats` object,
  e.g. CLIP scores): a value a cluster lacks is 0 with a missing-indicator set, so a stat
  that some clusters lack never breaks training or proposing.
- The classifier is scikit-learn's logistic regression with balanced classes: it trains on
  1,000 labels in seconds and gives probabilities for the "least certain first" queue. Every
  fitted step (idf weights, scaling, the model) is fitted inside each cross-validation fold
  (one sklearn Pipeline), so nothing fitted ever sees a held-out label.
- Honest agreement: a cluster in its own training set gets its out-of-fold (k-fold)
  prediction, never the prediction of a model that saw its label; the training reports the
  cross-validated kappa with a bootstrap interval (clusterqc.metrics).
- Training labels are the clusters all their reviewers agree on; disagreements are left out.
  Fewer than 10 labels or fewer than 3 of either verdict is refused in one line.
- The version is a hash of the training labels and the settings, so proposing after more
  decisions makes a new version (a new line on the Agreement page) and proposing again with
  nothing new changes nothing.
- Proposing for 100,000 clusters goes a chunk at a time (features, predict, one transaction),
  not through the threaded per-cluster runner: a matrix product per chunk is what makes it fast.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler

from clusterqc.jobs import BackgroundJob
from clusterqc.judges import offline
from clusterqc.judges.base import JudgeError
from clusterqc.metrics import Kappa, pair_stats
from clusterqc.model import Cluster, ClusterTexts, Proposal, Sample, Verdict
from clusterqc.store import Store

NAME = "learned"
FEATURES_VERSION = "learned-features-v3"  # bump whenever a feature below changes
MIN_LABELS = 10
MIN_PER_CLASS = 3
PENDING_CAP = 1_000  # the retrain offer counts the decisions since training up to this
MAX_FOLDS = 5
MAX_CAPTION_CHARS = 300  # a hostile 1 MB caption costs what 300 characters cost
CHUNK = 2_000  # clusters featurised, predicted and committed together
RETRAIN_EVERY = 10  # decisions; the Review page offers a retrain after this many new ones
POSITIVE = Verdict.UNACCEPTABLE.value  # the probability a model gives is P(Unacceptable)


HASH_FEATURES = 2**18  # per n-gram kind; collisions are rare at a few thousand clusters' n-grams
DEFAULT_NGRAMS = {"word": (1, 2), "char": (2, 4)}


@dataclass(frozen=True)
class Settings:
    """Everything that changes what the judge learns; part of its version hash."""

    C: float = 1.0
    folds: int = MAX_FOLDS
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "features": FEATURES_VERSION, "ngrams": DEFAULT_NGRAMS, "hash": HASH_FEATURES}


DEFAULT_SETTINGS = Settings()


class NotEnoughLabels(ValueError):
    """Too few agreed labels to learn from; the message is the one line users see."""


# --------------------------------------------------------------------------- features

_SIGNAL_FLAGS = ("file_name", "placeholder", "url", "empty", "garbled", "html_entities", "unusable")


def texts_of(cluster: Cluster | ClusterTexts) -> ClusterTexts:
    """A cluster as the judge reads it: its captions (closest first) and numbers."""
    if isinstance(cluster, ClusterTexts):
        return cluster
    return ClusterTexts(cluster.id, tuple(s.text for s in cluster.samples), cluster.size, cluster.stats)


def _as_cluster(item: Cluster | ClusterTexts) -> Cluster:
    """What the offline judge's functions take (they read only the captions)."""
    if isinstance(item, Cluster):
        return item
    return Cluster(item.id, tuple(Sample(t) for t in item.texts), (), item.size, stats=item.stats)


def cluster_text(cluster: Cluster | ClusterTexts) -> str:
    """What the n-gram features read: every caption (cut to MAX_CAPTION_CHARS), one per line."""
    return "\n".join(t[:MAX_CAPTION_CHARS] for t in texts_of(cluster).texts)


def offline_signals(found: offline.ClusterFeatures) -> dict[str, float]:
    """The offline judge's evidence for one cluster as numbers."""
    n = max(len(found.samples), 1)
    out: dict[str, float] = {f"share_{flag}": found.count(flag) / n for flag in _SIGNAL_FLAGS}
    out["share_explicit"] = found.count("explicit") / n
    out["share_duplicates"] = found.duplicates / n
    out["lexical_diversity"] = found.lexical_diversity
    out["median_words"] = math.log1p(found.median_words)
    out["offline_score"] = found.score
    return out


# The offline judge's per-sample hint texts (SampleFeatures.hints) for each flag.
_HINTS = {"file_name": "file name", "placeholder": "placeholder", "url": "URL", "empty": "empty",
          "garbled": "mojibake / replacement characters", "html_entities": "HTML entities"}
_UNUSABLE = {_HINTS[k] for k in ("file_name", "placeholder", "url", "empty", "garbled")}


def offline_signals_from_raw(raw: str) -> dict[str, float] | None:
    """The same numbers as `offline_signals`, read back from a stored offline proposal's raw JSON.

    The offline judge costs 1.5-2 ms a cluster (bench/RESULTS.md), which alone would put
    100,000 proposals at minutes; when the offline judge has already answered (the app runs it
    on first start), its stored evidence is read instead. tests/test_learned_judge.py checks
    that both give identical numbers. None when the raw text is not the offline judge's JSON.
    """
    try:
        data = json.loads(raw)
        hints = [set(h) for h in data["hints"]]
        n = max(len(hints), 1)
        out = {f"share_{flag}": sum(text in h for h in hints) / n for flag, text in _HINTS.items()}
        out["share_unusable"] = sum(bool(h & _UNUSABLE) for h in hints) / n
        out["share_explicit"] = sum(any(t.startswith("explicit term:") for t in h) for h in hints) / n
        out["share_duplicates"] = sum(
            any(t.startswith("duplicate of #") or t == "has near-duplicates" for t in h) for h in hints) / n
        out["lexical_diversity"] = float(data["lexical_diversity"])
        out["median_words"] = math.log1p(float(data["median_words"]))
        out["offline_score"] = float(data["score"])
    except (ValueError, KeyError, TypeError):
        return None
    return out


# `offline_signals_many`: each share is one bit of a sample's mask, counted for a whole chunk
# with one bincount per bit instead of Python sums over sets per cluster (a seventh of proposing).
_SHARE_BITS = (*(f"share_{flag}" for flag in _HINTS), "share_unusable", "share_explicit", "share_duplicates")
_HINT_MASKS: dict[str, int] = {}


def _hint_mask(hint: str) -> int:
    """The share bits one hint text sets (cached: a store has a few dozen distinct hints)."""
    mask = _HINT_MASKS.get(hint)
    if mask is None:
        on = [hint == text for text in _HINTS.values()]
        on += [hint in _UNUSABLE, hint.startswith("explicit term:"),
               hint.startswith("duplicate of #") or hint == "has near-duplicates"]
        mask = sum(1 << bit for bit, yes in enumerate(on) if yes)
        if len(_HINT_MASKS) < 100_000:  # explicit-term hints vary with the terms; bounded
            _HINT_MASKS[hint] = mask
    return mask


def _sample_masks(data: Any) -> tuple[list[int], float, float, float]:
    """One stored offline answer: each sample's share bits, and its three numbers."""
    masks = []
    for hints in data["hints"]:
        mask = 0
        for hint in hints:
            if not isinstance(hint, str):
                raise TypeError("hint is not text")
            mask |= _hint_mask(hint)
        masks.append(mask)
    return masks, float(data["lexical_diversity"]), math.log1p(float(data["median_words"])), float(data["score"])


def offline_signals_many(raws: Sequence[str | None]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`offline_signals_from_raw` for many raw answers at once, as columns.

    Returns the columns (NaN where a raw is missing or unreadable) and the mask of the rows
    that were read; tests/test_learned_judge.py checks both give identical numbers.
    """
    n = len(raws)
    read = np.zeros(n, dtype=bool)
    numbers = np.full((n, 3), math.nan)
    owner: list[int] = []
    flat: list[int] = []
    for i, raw in enumerate(raws):
        if not raw:
            continue
        try:
            masks, *values = _sample_masks(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        read[i] = True
        numbers[i] = values
        owner.extend([i] * len(masks))
        flat.extend(masks)
    per_sample = np.array(flat, dtype=np.int64)
    index = np.array(owner, dtype=np.int64)
    samples = np.maximum(np.bincount(index, minlength=n), 1).astype(np.float64)
    out = {name: np.bincount(index, weights=(per_sample >> bit) & 1, minlength=n) / samples
           for bit, name in enumerate(_SHARE_BITS)}
    for column in out.values():
        column[~read] = math.nan
    out["lexical_diversity"], out["median_words"], out["offline_score"] = numbers.T
    return out, read


def signal_features(cluster: Cluster | ClusterTexts, offline_raw: str | None = None) -> dict[str, float]:
    """The offline judge's evidence as numbers (its own functions, or its stored answer's
    `offline_raw`), plus caption length, size and stats (scripts: `script_shares`).
    One cluster at a time; `feature_matrix` computes the same for a chunk at once."""
    signals = offline_signals_from_raw(offline_raw) if offline_raw else None
    out = signals if signals is not None else offline_signals(offline.cluster_features(_as_cluster(cluster)))
    out.update(_own_numbers(texts_of(cluster)))
    return out


def _own_numbers(item: ClusterTexts) -> dict[str, float]:
    """Caption length, size and stats: the numbers read from the cluster itself."""
    lengths = [len(t) for t in item.texts] or [0]
    out = {"mean_chars": math.log1p(sum(lengths) / len(lengths)),
           "size": math.log1p(item.size) if item.size is not None else math.nan}
    out.update(stats_features(item))
    return out


def stats_features(cluster: Cluster | ClusterTexts) -> dict[str, float]:
    """Numeric fields of the cluster's `stats` object (e.g. CLIP scores), when it has one.

    Clusters without stats (or without some field) give no value: the model imputes it and
    sees a missing-indicator, so stats help where present and never break where absent.
    """
    stats = getattr(cluster, "stats", None)
    if not isinstance(stats, dict):
        return {}
    out = {}
    for key, value in stats.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"stats.{key}"] = float(value)
    return out


_SPACES = re.compile(r"\s\s+")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits
_STEP = np.uint64(1_000_003)
_UNSTEP = np.uint64(pow(1_000_003, -1, 2**64))  # _STEP * _UNSTEP == 1 modulo 2^64
_PAIR = np.uint64(0xC2B2AE3D27D4EB4F)  # combines two word hashes into a bigram's
_HASH_BITS = np.uint64(64 - HASH_FEATURES.bit_length() + 1)


def _code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All texts as one array of code points (lower-cased, whitespace runs as one space),
    NUL between texts; with each position's text index and the separator mask."""
    cleaned = [_SPACES.sub(" ", t.replace("\x00", " ").lower()) for t in texts]
    points = np.frombuffer("\x00".join(cleaned).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    breaks = points == 0
    return points, np.cumsum(breaks, dtype=np.int32), breaks  # int32: half the memory of a chunk's pairs


def _bucket(h: np.ndarray) -> np.ndarray:
    """The HASH_FEATURES bucket of each 64-bit hash: its top bits after one multiplication."""
    h *= _MIX
    h >>= _HASH_BITS
    return h.astype(np.int32)


def _char_pairs(points: tuple[np.ndarray, np.ndarray, np.ndarray],
                ngrams: tuple[int, int] = DEFAULT_NGRAMS["char"]) -> tuple[np.ndarray, np.ndarray]:
    """(text index, bucket) of every character n-gram; an n-gram never spans two texts.

    The n-gram starting at i hashes as n * _STEP^n + sum(cp[i+k] * _STEP^(n-1-k)), so each
    length's hashes are the previous length's times _STEP plus one code point plus _STEP^n:
    two array operations per length, in place.
    """
    cps, doc, breaks = points
    rows, cols = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    # Characters from each position up to the next separator (or the end): an n-gram
    # starting at i stays inside one text when at least n of them are left.
    where = np.flatnonzero(breaks)
    room = np.concatenate([where, [len(cps)]])[np.searchsorted(where, np.arange(len(cps)))] - np.arange(len(cps))
    h = np.zeros(len(cps), dtype=np.uint64)  # length 0
    for n in range(1, ngrams[1] + 1):
        width = len(cps) - n + 1
        if width <= 0:
            break
        h = h[:width]
        h *= _STEP
        h += cps[n - 1 : n - 1 + width]
        h += np.uint64(pow(int(_STEP), n, 2**64))
        if n < ngrams[0]:
            continue
        inside = room[:width] >= n
        rows.append(doc[:width][inside])
        cols.append(_bucket(h[inside]))
    return np.concatenate(rows), np.concatenate(cols)


def char_ngram_counts(texts: Sequence[str], ngrams: tuple[int, int] = DEFAULT_NGRAMS["char"],
                      points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
    """Hashed character n-gram counts (lower-cased, runs of whitespace as one space), in numpy.

    The same n-grams as HashingVectorizer(analyzer="char"), but the n-grams of a whole chunk
    are hashed as arrays of code points instead of one Python string slice at a time: 5x
    faster, and that was half the cost of proposing. Rows are `texts`, columns HASH_FEATURES
    buckets; an n-gram never spans two texts.
    """
    row, col = _char_pairs(points if points is not None else _code_points(texts), ngrams)
    return _counts(row, col, len(texts), HASH_FEATURES)


# Which code points are word characters (what `\w` matches: str.isalnum() or "_"), for the
# Basic Multilingual Plane as one lookup table; built on first use.
_BMP_WORD: np.ndarray | None = None


def _is_word(cps: np.ndarray) -> np.ndarray:
    """Per code point: is it a word character (the table for the BMP, Python beyond it)."""
    global _BMP_WORD
    if _BMP_WORD is None:
        _BMP_WORD = np.fromiter((chr(c).isalnum() or c == 0x5F for c in range(0x10000)), dtype=bool, count=0x10000)
    small = cps < 0x10000
    out = np.zeros(len(cps), dtype=bool)
    out[small] = _BMP_WORD[cps[small]]
    if not small.all():
        rare, where = np.unique(cps[~small], return_inverse=True)
        out[~small] = np.array([chr(int(c)).isalnum() for c in rare], dtype=bool)[where]
    return out


def word_hash(word: str) -> int:
    """The hash `_word_pairs` gives one word, in plain Python (for tests): sum of code point
    k times _STEP^k, modulo 2^64."""
    return sum(ord(c) * pow(int(_STEP), k, 2**64) for k, c in enumerate(word)) % 2**64


def _word_pairs(points: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(text index, bucket) of every word unigram and bigram, hashed in numpy.

    Words are what scikit-learn's default token pattern finds (runs of 2 or more word
    characters, in lower-cased text) and bigrams are consecutive words of one text, as
    HashingVectorizer(ngram_range=(1, 2)) has them; the hash is ours (scikit-learn's
    analyzer built and hashed one Python string per n-gram: a fifth of proposing).
    A word's hash is a polynomial over its code points, taken from one prefix sum over the
    chunk: sum(cp[j] * _STEP^j) between its ends, times _UNSTEP^start.
    """
    cps, doc, _ = points
    if len(cps) == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    word = _is_word(cps)
    edge = np.diff(np.concatenate([[False], word, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    keep = ends - starts >= 2
    starts, ends = starts[keep], ends[keep]
    powers = np.cumprod(np.full(len(cps), _STEP))  # wraps modulo 2^64, as meant
    powers = np.concatenate([[np.uint64(1)], powers[:-1]])
    unpowers = np.concatenate([[np.uint64(1)], np.cumprod(np.full(len(cps) - 1, _UNSTEP))])
    prefix = np.concatenate([[np.uint64(0)], np.cumsum(cps * powers)])
    words = (prefix[ends] - prefix[starts]) * unpowers[starts]
    text = doc[starts]
    same = text[1:] == text[:-1]
    bigrams = (words[:-1][same] * _PAIR + words[1:][same]) * _PAIR + np.uint64(2)
    return (np.concatenate([text, text[:-1][same]]),
            np.concatenate([_bucket(words * _PAIR + np.uint64(1)), _bucket(bigrams)]))


def word_ngram_counts(texts: Sequence[str]) -> sp.csr_matrix:
    """Hashed word unigram and bigram counts, rows `texts`, HASH_FEATURES columns (`_word_pairs`)."""
    row, col = _word_pairs(_code_points(texts))
    return _counts(row, col, len(texts), HASH_FEATURES)


def _counts(row: np.ndarray, col: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """Counts of (row, col) pairs as a CSR matrix with sorted indices."""
    matrix = sp.csr_matrix((np.ones(len(row), dtype=np.float32), (row, col)), shape=(n_rows, n_cols))
    matrix.sum_duplicates()
    return matrix


# Code point ranges of the scripts a DataComp caption is written in (ranges, not Unicode
# categories, so a chunk's shares are a few numpy comparisons).
_SCRIPT_RANGES = {
    "latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F)),
    "cjk": ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF)),
    "cyrillic": ((0x400, 0x4FF),),
    "arabic_hebrew": ((0x590, 0x6FF),),
}
_NOT_LETTERS = ((0x2000, 0x2BFF), (0x3000, 0x303F), (0xFE00, 0xFE6F), (0xFF00, 0xFF20), (0x1F000, 0x10FFFF))


def _in_ranges(cps: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(cps), dtype=bool)
    for lo, hi in ranges:
        mask |= (cps >= lo) & (cps <= hi)
    return mask


def script_shares(n_texts: int, points: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Per text: the share of its letters in each script, how many scripts it mixes (>= 10%),
    and its share of digits. A cluster of mixed or non-Latin scripts reads differently."""
    cps, doc, breaks = points
    count = lambda mask: np.bincount(doc[mask], minlength=n_texts).astype(np.float64)
    length = count(~breaks)
    letters = count(_in_ranges(cps, _SCRIPT_RANGES["latin"]) | ((cps >= 0xC0) & ~_in_ranges(cps, _NOT_LETTERS)))
    safe = np.maximum(letters, 1.0)
    out = {f"script_{name}": count(_in_ranges(cps, ranges)) / safe for name, ranges in _SCRIPT_RANGES.items()}
    out["script_other"] = np.clip(1.0 - sum(out.values()), 0.0, 1.0) * (letters > 0)
    out["scripts_used"] = sum((v >= 0.1).astype(np.float64) for v in out.values())
    out["digit_share"] = count((cps >= 0x30) & (cps <= 0x39)) / np.maximum(length, 1.0)
    return out


def numeric_features(items: Sequence[Cluster | ClusterTexts], offline_raws: dict[str, str],
                     points: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Every numeric signal of a chunk as columns (NaN where a cluster lacks it): the offline
    judge's evidence (read back from its stored answers, computed for the rest), caption
    length, size, stats and scripts."""
    n = len(items)
    columns, read = offline_signals_many([offline_raws.get(c.id) for c in items])
    for i in np.flatnonzero(~read).tolist():
        for name, value in offline_signals(offline.cluster_features(_as_cluster(items[i]))).items():
            columns[name][i] = value
    own = [texts_of(c) for c in items]
    # `_own_numbers`, a column at a time (the same float operations, so the same numbers).
    columns["mean_chars"] = np.array(
        [math.log1p(sum(map(len, c.texts)) / len(c.texts) if c.texts else 0.0) for c in own], dtype=np.float64)
    columns["size"] = np.array([math.nan if c.size is None else math.log1p(c.size) for c in own], dtype=np.float64)
    for i, item in enumerate(own):
        if item.stats is None:
            continue
        for name, value in stats_features(item).items():
            if name not in columns:
                columns[name] = np.full(n, math.nan)
            columns[name][i] = value
    columns.update(script_shares(n, points))
    return columns


def feature_matrix(clusters: Sequence[Cluster | ClusterTexts], numeric: Sequence[str] | None = None,
                   offline_raws: dict[str, str] | None = None,
                   columns: np.ndarray | None = None) -> tuple[sp.csr_matrix, list[str]]:
    """One sparse row per cluster: word and char n-gram counts, then the numeric signals.

    The n-gram counts are hashed (stateless, so computing them once for all training clusters
    leaks nothing between CV folds, and no vocabulary is built and sorted per fold: that was
    80% of training time). A numeric signal a cluster lacks is 0 with a missing-indicator
    column set, so stats help where present and never break where absent. `numeric` fixes
    the columns (the ones seen in training); returns the matrix and those column names.
    `columns` (a model's `used_columns`) gives that matrix's columns only: the same as
    `feature_matrix(...)[0][:, columns]`, without building the n-grams no model column has.
    """
    texts = [cluster_text(c) for c in clusters]
    points = _code_points(texts)
    found = numeric_features(clusters, offline_raws or {}, points)
    names = list(numeric) if numeric is not None else sorted(found)
    absent = np.full(len(texts), math.nan)
    values = np.column_stack([found.get(k, absent) for k in names]) if names else np.zeros((len(texts), 0))
    missing = ~np.isfinite(values)
    dense = np.hstack([np.where(missing, 0.0, values), missing.astype(np.float64)])
    pairs = [_word_pairs(points), _char_pairs(points)]
    pairs[1][1][:] += HASH_FEATURES
    width = 2 * HASH_FEATURES
    if columns is not None:  # each n-gram's column among the model's, or -1
        grams = columns[columns < 2 * HASH_FEATURES]
        position = np.full(2 * HASH_FEATURES, -1, dtype=np.int32)
        position[grams] = np.arange(len(grams), dtype=np.int32)
        width = len(grams)
        for i, (row, col) in enumerate(pairs):
            col = position[col]
            kept = col >= 0
            pairs[i] = row[kept], col[kept]
    counts = _counts(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), len(texts), width)
    return sp.hstack([counts, sp.csr_matrix(dense)], format="csr"), names


def used_columns(matrix: sp.csr_matrix, n_numeric: int) -> np.ndarray:
    """The hashed n-gram columns some training cluster has, plus every numeric column.

    Training and predicting on these only keeps the model as small as the training texts'
    n-grams (a few tens of thousands of columns, not 2 x 2^18): that is what keeps the solver
    and the column bookkeeping fast. A column no training cluster has would get no weight anyway.
    """
    grams = np.unique(matrix.indices[matrix.indices < 2 * HASH_FEATURES])
    return np.concatenate([grams, np.arange(2 * HASH_FEATURES, 2 * HASH_FEATURES + 2 * n_numeric)])


def build_pipeline(columns: np.ndarray, settings: Settings = DEFAULT_SETTINGS) -> Pipeline:
    """TF-IDF weighting, scaling and classifier as one Pipeline over `feature_matrix` rows
    restricted to `columns` (see `used_columns`).

    Everything fitted (idf, scales, weights) is fitted inside each CV fold afresh.
    """
    n_words = int(np.sum(columns < HASH_FEATURES))
    n_grams = int(np.sum(columns < 2 * HASH_FEATURES))
    transformers = ColumnTransformer(
        [
            ("word", TfidfTransformer(sublinear_tf=True), slice(0, n_words)),
            ("char", TfidfTransformer(sublinear_tf=True), slice(n_words, n_grams)),
            ("signals", MaxAbsScaler(), slice(n_grams, len(columns))),
        ],
        sparse_threshold=1.0,
    )
    # liblinear's dual form: with far more n-gram features than labelled clusters it solves in
    # the number of labels, 20x faster than the primal at 200 labels x 70,000 features.
    model = LogisticRegression(C=settings.C, class_weight="balanced", max_iter=5_000, solver="liblinear", dual=True,
                               random_state=settings.seed)  # liblinear shuffles: seeded, runs repeat exactly
    return Pipeline([("features", transformers), ("model", model)])


# --------------------------------------------------------------------------- training


def training_labels(store: Store, dataset: str | None = None) -> dict[str, str]:
    """cluster id -> verdict for one dataset's clusters whose reviewers all agree (disagreements
    left out). The judge learns one clustering at a time: `dataset` None is the only one."""
    verdicts: dict[str, set[str]] = {}
    for label in store.labels(dataset=store.resolve_dataset(dataset)):
        verdicts.setdefault(label["cluster_id"], set()).add(label["verdict"])
    return {cid: next(iter(v)) for cid, v in sorted(verdicts.items()) if len(v) == 1}


def check_enough(labels: dict[str, str]) -> None:
    """Refuse, in one line, to learn from fewer than 10 labels or fewer than 3 of either verdict."""
    acc = sum(v == Verdict.ACCEPTABLE.value for v in labels.values())
    unacc = len(labels) - acc
    if len(labels) < MIN_LABELS or min(acc, unacc) < MIN_PER_CLASS:
        raise NotEnoughLabels(
            f"the learned judge needs at least {MIN_LABELS} agreed labels with {MIN_PER_CLASS} of each verdict;"
            f" there are {len(labels)} ({acc} Acceptable, {unacc} Unacceptable)"
        )


def version_of(labels: dict[str, str], settings: Settings) -> str:
    """Hash of the training labels and the settings: more decisions, a new version."""
    payload = json.dumps({"labels": sorted(labels.items()), "settings": settings.as_dict()}, sort_keys=True)
    return "learned-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


@dataclass
class TrainedModel:
    """A fitted judge: the pipeline on all labels, and the out-of-fold probability per training cluster."""

    version: str
    settings: Settings
    labels: dict[str, str]
    numeric: list[str]
    columns: np.ndarray  # the feature_matrix columns the model uses (used_columns)
    pipeline: Pipeline
    oof: dict[str, float]  # cluster id -> P(Unacceptable) from the fold that did not see it
    kappa: Kappa
    folds: int
    train_seconds: float = 0.0

    @property
    def counts(self) -> tuple[int, int]:
        acc = sum(v == Verdict.ACCEPTABLE.value for v in self.labels.values())
        return acc, len(self.labels) - acc

    def predict(self, clusters: Sequence[Cluster | ClusterTexts], offline_raws: dict[str, str] | None = None
                ) -> np.ndarray:
        """P(Unacceptable) per cluster from the model fitted on every label."""
        if not clusters:
            return np.zeros(0)
        matrix, _ = feature_matrix(clusters, self.numeric, offline_raws, columns=self.columns)
        proba = self.pipeline.predict_proba(matrix)
        return proba[:, list(self.pipeline.classes_).index(POSITIVE)]

    def summary(self) -> str:
        """The one line training prints: how many labels, and the cross-validated kappa."""
        acc, unacc = self.counts
        k = self.kappa
        if k.value is None:
            score = f"cross-validated kappa undefined ({k.note})"
        elif k.low is None:
            score = f"cross-validated kappa {k.value:.2f} ({k.note})"
        else:
            score = f"cross-validated kappa {k.value:.2f} (95% CI {k.low:.2f} to {k.high:.2f})"
        return (f"learned judge {self.version}: {len(self.labels)} labels ({acc} Acceptable, {unacc} Unacceptable),"
                f" {self.folds}-fold {score}")


def train(clusters: Sequence[Cluster], labels: dict[str, str], settings: Settings = DEFAULT_SETTINGS,
          n_boot: int = 1000, offline_raws: dict[str, str] | None = None) -> TrainedModel:
    """Fit on `labels` (cluster id -> verdict); out-of-fold probabilities for every labelled cluster."""
    check_enough(labels)
    started = time.perf_counter()
    by_id = {c.id: c for c in clusters}
    missing = [cid for cid in labels if cid not in by_id]
    if missing:
        raise ValueError(f"labelled clusters not given to train: {', '.join(missing[:5])}")
    ids = sorted(labels)
    train_clusters = [by_id[cid] for cid in ids]
    y = np.array([labels[cid] for cid in ids])
    matrix, numeric = feature_matrix(train_clusters, offline_raws=offline_raws)
    columns = used_columns(matrix, len(numeric))
    matrix = matrix[:, columns]
    folds = min(settings.folds, int(min(np.sum(y == POSITIVE), np.sum(y != POSITIVE))))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stats columns inside a small fold
        oof = cross_val_predict(build_pipeline(columns, settings), matrix, y, cv=cv, method="predict_proba")
        pipeline = build_pipeline(columns, settings).fit(matrix, y)
    classes = sorted(set(y))  # cross_val_predict orders columns like LabelEncoder: sorted
    p_unacc = oof[:, classes.index(POSITIVE)]
    predicted = [_verdict(p).value for p in p_unacc]
    kappa = pair_stats(list(y), predicted, n_boot=n_boot, seed=settings.seed).kappa
    return TrainedModel(
        version=version_of(labels, settings),
        settings=settings,
        labels=dict(labels),
        numeric=numeric,
        columns=columns,
        pipeline=pipeline,
        oof=dict(zip(ids, map(float, p_unacc))),
        kappa=kappa,
        folds=folds,
        train_seconds=time.perf_counter() - started,
    )


def train_from_store(store: Store, settings: Settings = DEFAULT_SETTINGS, dataset: str | None = None) -> TrainedModel:
    """Train on one dataset's agreed labels (refusing, in one line, when there are too few)."""
    dataset = store.resolve_dataset(dataset)
    labels = training_labels(store, dataset)
    check_enough(labels)
    return train(list(store.iter_clusters(list(labels), dataset=dataset)), labels, settings,
                 offline_raws=_offline_raws(store, labels, dataset))


def _offline_raws(store: Store, ids: Iterable[str], dataset: str | None = None) -> dict[str, str]:
    """The offline judge's stored answers for these clusters (current offline version only)."""
    return store.proposal_raws(offline.NAME, offline.PROMPT_VERSION, ids, dataset=dataset)


# --------------------------------------------------------------------------- proposing


def _verdict(p_unacceptable: float) -> Verdict:
    return Verdict.UNACCEPTABLE if p_unacceptable >= 0.5 else Verdict.ACCEPTABLE


def make_proposal(model: TrainedModel, cluster_id: str, p_unacceptable: float, out_of_fold: bool,
                  dataset: str | None = None) -> Proposal:
    """A proposal carrying the probability: confidence is P(its own verdict)."""
    verdict = _verdict(p_unacceptable)
    confidence = max(p_unacceptable, 1.0 - p_unacceptable)
    reason_tail, raw_tail = _proposal_tails(model)
    reason = f"P(Unacceptable) = {p_unacceptable:.2f} ({reason_tail[out_of_fold]}"
    # json.dumps of {"p_unacceptable": ..., "out_of_fold": ..., then the model's fixed keys},
    # with that fixed part encoded once per model instead of once per cluster.
    raw = (f'{{"p_unacceptable": {json.dumps(round(p_unacceptable, 6))}, "out_of_fold": '
           f'{"true" if out_of_fold else "false"}, {raw_tail}')
    return Proposal(cluster_id=cluster_id, judge=NAME, prompt_version=model.version, verdict=verdict,
                    reason=reason, raw=raw, confidence=round(confidence, 6), dataset=dataset)


def _proposal_tails(model: TrainedModel) -> tuple[dict[bool, str], str]:
    """The parts of every proposal's reason and raw JSON that depend on the model only."""
    key = (model.version, len(model.labels), model.folds, model.kappa.value)
    cached = model.__dict__.get("_tails")
    if cached is None or cached[0] != key:
        n = len(model.labels)
        scored = f"; {model.folds}-fold kappa {_kappa_text(model.kappa)})."
        reasons = {True: f"out-of-fold: this cluster is one of its {n} training labels, predicted by a model"
                         f" that did not see it{scored}", False: f"trained on {n} curator labels{scored}"}
        raw = json.dumps({"trained_on": n, "cv_kappa": model.kappa.value, "settings": model.settings.as_dict()})
        cached = (key, (reasons, raw[1:]))
        model.__dict__["_tails"] = cached
    return cached[1]


def _kappa_text(k: Kappa) -> str:
    return "undefined" if k.value is None else f"{k.value:.2f}"


class LearnedJudge:
    """A trained model behind the usual `judge(cluster) -> Proposal` (for the batch runner and tests).

    Training clusters get their out-of-fold probability, never the fitted model's.
    """

    name = NAME

    def __init__(self, model: TrainedModel):
        self.model = model
        self.prompt_version = model.version

    def judge(self, cluster: Cluster) -> Proposal:
        if cluster.id in self.model.oof:
            return make_proposal(self.model, cluster.id, self.model.oof[cluster.id], out_of_fold=True)
        try:
            p = float(self.model.predict([cluster])[0])
        except (ValueError, TypeError) as exc:
            raise JudgeError(f"learned judge could not featurise {cluster.id}: {exc}") from None
        return make_proposal(self.model, cluster.id, p, out_of_fold=False)


@dataclass
class LearnedRun:
    """What `train_and_propose` did, for the CLI line and the Review page's retrain message."""

    model: TrainedModel
    proposed: int = 0
    already: int = 0
    propose_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    cancelled: bool = False

    def summary(self) -> str:
        return (f"{self.model.summary()}; proposed for {self.proposed} clusters"
                f" ({self.already} already had this version) in"
                f" {self.model.train_seconds + self.propose_seconds:.1f} s")


def propose_all(store: Store, model: TrainedModel, ids: Iterable[str] | None = None,
                progress: Callable[[int, int], object] | None = None, dataset: str | None = None,
                cancel: threading.Event | None = None) -> LearnedRun:
    """Propose for every cluster of the dataset (the one the model learned; None: the only one)
    without a proposal of this version, a chunk per transaction; `cancel` stops between chunks."""
    started = time.perf_counter()
    dataset = store.resolve_dataset(dataset)
    pending = store.pending_cluster_ids(NAME, model.version, ids=ids, dataset=dataset)
    run = LearnedRun(model)
    for start in range(0, len(pending), CHUNK):
        if cancel is not None and cancel.is_set():
            run.cancelled = True
            break
        chunk = list(store.iter_cluster_texts(pending[start : start + CHUNK], dataset=dataset))
        fresh = [c for c in chunk if c.id not in model.oof]
        raws = _offline_raws(store, [c.id for c in fresh], dataset)
        probs = dict(zip((c.id for c in fresh), model.predict(fresh, raws).tolist()))
        proposals = [
            make_proposal(model, c.id, model.oof[c.id], True, dataset) if c.id in model.oof
            else make_proposal(model, c.id, probs[c.id], False, dataset)
            for c in chunk
        ]
        added = store.add_proposals(proposals)
        run.proposed += added
        run.already += len(proposals) - added
        if progress is not None:
            progress(min(start + CHUNK, len(pending)), len(pending))
    run.propose_seconds = time.perf_counter() - started
    return run


def train_and_propose(store: Store, settings: Settings = DEFAULT_SETTINGS,
                      progress: Callable[[int, int], object] | None = None, dataset: str | None = None,
                      cancel: threading.Event | None = None) -> LearnedRun:
    """Retrain on one dataset's agreed labels and propose for its every cluster: the retrain button's work."""
    dataset = store.resolve_dataset(dataset)
    return propose_all(store, train_from_store(store, settings, dataset), progress=progress, dataset=dataset,
                       cancel=cancel)


@dataclass(frozen=True)
class Readiness:
    """Whether the learned judge can train on a dataset now, and the version it would be."""

    labels: int
    acceptable: int
    unacceptable: int
    version: str
    refusal: str | None  # the one-line refusal when there are too few labels; None when it can train

    def line(self) -> str:
        """The one line the Propose page shows before a run."""
        if self.refusal:
            return self.refusal
        return (f"Can train: {self.labels} agreed labels ({self.acceptable} Acceptable, {self.unacceptable}"
                f" Unacceptable); a run trains on them ({MAX_FOLDS}-fold cross-validated) and proposes for"
                " every cluster of this dataset.")


def readiness(store: Store, dataset: str | None = None, settings: Settings = DEFAULT_SETTINGS) -> Readiness:
    """What training would learn from now, without training (the labels and their hash)."""
    labels = training_labels(store, dataset)
    acc = sum(v == Verdict.ACCEPTABLE.value for v in labels.values())
    try:
        check_enough(labels)
        refusal = None
    except NotEnoughLabels as exc:
        refusal = str(exc)
    return Readiness(len(labels), acc, len(labels) - acc, version_of(labels, settings), refusal)


class LearnedJob(BackgroundJob):
    """Training and proposing on its own thread with its own Store, for the Propose page.

    The same reason as `clusterqc.propose.BatchJob`: a Streamlit rerun interrupts the page
    script, so a run of a minute (100,000 clusters) must not live in it. The page polls
    `stage` and `progress`; Stop sets `cancel`, checked between chunks (each chunk's
    proposals are already stored).
    """

    def __init__(self, db_path: str | Path, dataset: str | None = None, settings: Settings = DEFAULT_SETTINGS):
        super().__init__("clusterqc-learned")
        self.db_path = Path(db_path)
        self.dataset = dataset
        self.settings = settings
        self.stage = "training"
        self.progress: tuple[int, int] = (0, 0)  # clusters done, clusters to propose for
        self.result: LearnedRun | None = None

    def _on_progress(self, done: int, total: int) -> None:
        self.progress = (done, total)

    def _run(self) -> None:
        try:
            with Store(self.db_path) as store:
                model = train_from_store(store, self.settings, self.dataset)
                self.stage = "proposing"
                self.result = propose_all(store, model, progress=self._on_progress, dataset=self.dataset,
                                          cancel=self.cancel)
        except NotEnoughLabels as exc:  # the labels changed since the page checked
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown on the page as one line, never lost silently
            line = str(exc).splitlines()[0] if str(exc) else "no details"
            self.error = f"{type(exc).__name__}: {line}"
        finally:
            self.stage = "done"


def decisions_since_training(store: Store, dataset: str | None = None, cap: int | None = None) -> int:
    """A dataset's decisions since its newest learned proposals were stored (all of them if never
    trained), counted up to `cap` when given."""
    dataset = store.resolve_dataset(dataset)
    return store.decisions_since(store.newest_proposal_time(NAME, dataset=dataset), dataset=dataset, cap=cap)


def retrain_pending(store: Store, dataset: str | None = None) -> int:
    """The decisions since the last training when a retrain is due (every RETRAIN_EVERY of them,
    once there is enough to learn from), else 0.

    Runs on every key press of the Review page, so it never reads the labels themselves: the
    enough-to-learn check is `check_enough`'s rule on counts capped at MIN_LABELS, and the
    decisions are counted up to PENDING_CAP (the page then says "at least" that many).
    """
    dataset = store.resolve_dataset(dataset)
    since = decisions_since_training(store, dataset, cap=PENDING_CAP)
    if since < RETRAIN_EVERY:
        return 0
    acc, unacc = store.agreed_label_counts(dataset, cap=MIN_LABELS)
    if acc + unacc < MIN_LABELS or min(acc, unacc) < MIN_PER_CLASS:
        return 0
    return since


def retrain_due(store: Store, dataset: str | None = None) -> bool:
    """True every RETRAIN_EVERY decisions since the last training, once there is enough to learn from."""
    return retrain_pending(store, dataset) > 0


__all__ = [
    "NAME", "LearnedJob", "LearnedJudge", "LearnedRun", "NotEnoughLabels", "Readiness", "Settings", "TrainedModel",
    "build_pipeline", "feature_matrix", "propose_all", "readiness", "retrain_due", "retrain_pending",
    "signal_features", "train", "train_and_propose", "train_from_store", "training_labels",
]
