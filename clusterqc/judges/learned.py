"""The learned judge: a classifier trained on the curators' own decisions, proposing the rest.

Why it is built this way:
- An LLM is not always there, and the offline heuristics agree with a curator only modestly.
  What every curator has after an hour is a few dozen decisions; a small local model trained
  on them proposes the other clusters as this curator would (FineWeb-Edu's classifier on LLM
  labels, Prodigy's textcat.teach are the models).
- Features per cluster: TF-IDF word and character n-grams over its samples; the offline
  judge's signals, computed by the offline judge's own functions (file-name share,
  placeholders, duplicates, lexical diversity, caption length) plus the share of each script;
  and the cluster's numbers where present (size, and any numeric field of a `stats` object,
  e.g. CLIP scores), missing values imputed with an indicator so a stat that some clusters
  lack never breaks training or proposing.
- The classifier is scikit-learn's logistic regression with balanced classes: it trains on
  1,000 labels in about a second and gives calibrated-enough probabilities for the "least
  certain first" queue. Every transform is fitted inside each cross-validation fold (one
  sklearn Pipeline), so the vocabulary and scaling never see a held-out label.
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
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from clusterqc.judges import offline
from clusterqc.judges.base import JudgeError
from clusterqc.metrics import Kappa, pair_stats
from clusterqc.model import Cluster, Proposal, Verdict
from clusterqc.store import Store

NAME = "learned"
FEATURES_VERSION = "learned-features-v1"  # bump whenever a feature below changes
MIN_LABELS = 10
MIN_PER_CLASS = 3
MAX_FOLDS = 5
MAX_CAPTION_CHARS = 300  # a hostile 1 MB caption costs what 300 characters cost
CHUNK = 2_000  # clusters featurised, predicted and committed together
RETRAIN_EVERY = 10  # decisions; the Review page offers a retrain after this many new ones
POSITIVE = Verdict.UNACCEPTABLE.value  # the probability a model gives is P(Unacceptable)


@dataclass(frozen=True)
class Settings:
    """Everything that changes what the judge learns; part of its version hash."""

    C: float = 1.0
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 4)
    max_word_features: int = 50_000
    max_char_features: int = 50_000
    folds: int = MAX_FOLDS
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "features": FEATURES_VERSION}


DEFAULT_SETTINGS = Settings()


class NotEnoughLabels(ValueError):
    """Too few agreed labels to learn from; the message is the one line users see."""


# --------------------------------------------------------------------------- features

_SCRIPTS = {
    "latin": re.compile(r"[A-Za-z\u00c0-\u024f]"),
    "cjk": re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "arabic_hebrew": re.compile(r"[\u0590-\u06ff]"),
}
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_SIGNAL_FLAGS = ("file_name", "placeholder", "url", "empty", "garbled", "html_entities", "unusable")


def cluster_text(cluster: Cluster) -> str:
    """What the TF-IDF vectorisers read: every caption (cut to MAX_CAPTION_CHARS), one per line."""
    return "\n".join(s.text[:MAX_CAPTION_CHARS] for s in cluster.samples)


def _script_shares(text: str) -> dict[str, float]:
    """Share of letters in each script: a cluster of mixed or non-Latin scripts reads differently."""
    letters = len(_LETTER.findall(text))
    shares = {f"script_{name}": len(rx.findall(text)) / letters if letters else 0.0 for name, rx in _SCRIPTS.items()}
    shares["script_other"] = max(0.0, 1.0 - sum(shares.values())) if letters else 0.0
    shares["scripts_used"] = float(sum(v >= 0.1 for v in shares.values()))
    shares["digit_share"] = len(_DIGIT.findall(text)) / max(len(text), 1)
    return shares


def signal_features(cluster: Cluster) -> dict[str, float]:
    """The offline judge's evidence as numbers (its own functions), plus scripts and stats."""
    found = offline.cluster_features(cluster)
    n = max(len(found.samples), 1)
    text = cluster_text(cluster)
    lengths = [len(s.text) for s in cluster.samples] or [0]
    out: dict[str, float] = {f"share_{flag}": found.count(flag) / n for flag in _SIGNAL_FLAGS}
    out["share_explicit"] = found.count("explicit") / n
    out["share_duplicates"] = found.duplicates / n
    out["lexical_diversity"] = found.lexical_diversity
    out["median_words"] = math.log1p(found.median_words)
    out["mean_chars"] = math.log1p(sum(lengths) / len(lengths))
    out["offline_score"] = found.score
    out.update(_script_shares(text))
    out["size"] = math.log1p(cluster.size) if cluster.size is not None else math.nan
    out.update(stats_features(cluster))
    return out


def stats_features(cluster: Cluster) -> dict[str, float]:
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


def feature_frame(clusters: Sequence[Cluster], numeric: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per cluster: a `text` column and the numeric signals (`numeric` fixes the columns)."""
    rows = [signal_features(c) for c in clusters]
    columns = list(numeric) if numeric is not None else sorted({k for r in rows for k in r})
    frame = pd.DataFrame.from_records(rows, columns=columns).astype("float64")
    frame.insert(0, "text", [cluster_text(c) for c in clusters])
    return frame


def build_pipeline(numeric: Sequence[str], settings: Settings = DEFAULT_SETTINGS) -> Pipeline:
    """Features and classifier as one sklearn Pipeline, so each CV fold fits all of it afresh."""
    columns = ColumnTransformer(
        [
            ("word", TfidfVectorizer(analyzer="word", ngram_range=settings.word_ngrams, sublinear_tf=True,
                                     max_features=settings.max_word_features, dtype=np.float32), "text"),
            ("char", TfidfVectorizer(analyzer="char", ngram_range=settings.char_ngrams, sublinear_tf=True,
                                     max_features=settings.max_char_features, dtype=np.float32), "text"),
            ("signals", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                      StandardScaler()), list(numeric)),
        ]
    )
    model = LogisticRegression(C=settings.C, class_weight="balanced", max_iter=2_000, solver="liblinear")
    return Pipeline([("features", columns), ("model", model)])


# --------------------------------------------------------------------------- training


def training_labels(store: Store) -> dict[str, str]:
    """cluster id -> verdict for the clusters whose reviewers all agree (disagreements left out)."""
    verdicts: dict[str, set[str]] = {}
    for label in store.labels():
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
    pipeline: Pipeline
    oof: dict[str, float]  # cluster id -> P(Unacceptable) from the fold that did not see it
    kappa: Kappa
    folds: int
    train_seconds: float = 0.0

    @property
    def counts(self) -> tuple[int, int]:
        acc = sum(v == Verdict.ACCEPTABLE.value for v in self.labels.values())
        return acc, len(self.labels) - acc

    def predict(self, clusters: Sequence[Cluster]) -> np.ndarray:
        """P(Unacceptable) per cluster from the model fitted on every label."""
        if not clusters:
            return np.zeros(0)
        frame = feature_frame(clusters, self.numeric)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            proba = self.pipeline.predict_proba(frame)
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
          n_boot: int = 1000) -> TrainedModel:
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
    frame = feature_frame(train_clusters)
    numeric = [c for c in frame.columns if c != "text"]
    folds = min(settings.folds, int(min(np.sum(y == POSITIVE), np.sum(y != POSITIVE))))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stats columns inside a small fold
        oof = cross_val_predict(build_pipeline(numeric, settings), frame, y, cv=cv, method="predict_proba")
        pipeline = build_pipeline(numeric, settings).fit(frame, y)
    classes = sorted(set(y))  # cross_val_predict orders columns like LabelEncoder: sorted
    p_unacc = oof[:, classes.index(POSITIVE)]
    predicted = [_verdict(p).value for p in p_unacc]
    kappa = pair_stats(list(y), predicted, n_boot=n_boot, seed=settings.seed).kappa
    return TrainedModel(
        version=version_of(labels, settings),
        settings=settings,
        labels=dict(labels),
        numeric=numeric,
        pipeline=pipeline,
        oof=dict(zip(ids, map(float, p_unacc))),
        kappa=kappa,
        folds=folds,
        train_seconds=time.perf_counter() - started,
    )


def train_from_store(store: Store, settings: Settings = DEFAULT_SETTINGS) -> TrainedModel:
    """Train on the store's agreed labels (refusing, in one line, when there are too few)."""
    labels = training_labels(store)
    check_enough(labels)
    return train(list(store.iter_clusters(list(labels))), labels, settings)


# --------------------------------------------------------------------------- proposing


def _verdict(p_unacceptable: float) -> Verdict:
    return Verdict.UNACCEPTABLE if p_unacceptable >= 0.5 else Verdict.ACCEPTABLE


def make_proposal(model: TrainedModel, cluster_id: str, p_unacceptable: float, out_of_fold: bool) -> Proposal:
    """A proposal carrying the probability: confidence is P(its own verdict)."""
    verdict = _verdict(p_unacceptable)
    confidence = max(p_unacceptable, 1.0 - p_unacceptable)
    how = (f"out-of-fold: this cluster is one of its {len(model.labels)} training labels, predicted by a model"
           " that did not see it" if out_of_fold else f"trained on {len(model.labels)} curator labels")
    reason = f"P(Unacceptable) = {p_unacceptable:.2f} ({how}; {model.folds}-fold kappa {_kappa_text(model.kappa)})."
    raw = json.dumps({"p_unacceptable": round(p_unacceptable, 6), "out_of_fold": out_of_fold,
                      "trained_on": len(model.labels), "cv_kappa": model.kappa.value,
                      "settings": model.settings.as_dict()})
    return Proposal(cluster_id=cluster_id, judge=NAME, prompt_version=model.version, verdict=verdict,
                    reason=reason, raw=raw, confidence=round(confidence, 6))


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

    def summary(self) -> str:
        return (f"{self.model.summary()}; proposed for {self.proposed} clusters"
                f" ({self.already} already had this version) in"
                f" {self.model.train_seconds + self.propose_seconds:.1f} s")


def propose_all(store: Store, model: TrainedModel, ids: Iterable[str] | None = None,
                progress: Callable[[int, int], object] | None = None) -> LearnedRun:
    """Propose for every cluster without a proposal of this version, a chunk per transaction."""
    started = time.perf_counter()
    pending = store.pending_cluster_ids(NAME, model.version, ids=ids)
    run = LearnedRun(model)
    for start in range(0, len(pending), CHUNK):
        chunk = list(store.iter_clusters(pending[start : start + CHUNK]))
        fresh = [c for c in chunk if c.id not in model.oof]
        probs = dict(zip((c.id for c in fresh), map(float, model.predict(fresh))))
        proposals = [
            make_proposal(model, c.id, model.oof[c.id], True) if c.id in model.oof
            else make_proposal(model, c.id, probs[c.id], False)
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
                      progress: Callable[[int, int], object] | None = None) -> LearnedRun:
    """Retrain on the current agreed labels and propose for every cluster: the retrain button's work."""
    return propose_all(store, train_from_store(store, settings), progress=progress)


def decisions_since_training(store: Store) -> int:
    """Decisions made since the newest learned proposals were stored (all decisions if never trained)."""
    return store.decisions_since(store.newest_proposal_time(NAME))


def retrain_due(store: Store) -> bool:
    """True every RETRAIN_EVERY decisions since the last training, once there is enough to learn from."""
    if decisions_since_training(store) < RETRAIN_EVERY:
        return False
    try:
        check_enough(training_labels(store))
    except NotEnoughLabels:
        return False
    return True


__all__ = [
    "NAME", "LearnedJudge", "LearnedRun", "NotEnoughLabels", "Settings", "TrainedModel", "build_pipeline",
    "feature_frame", "propose_all", "retrain_due", "signal_features", "train", "train_and_propose",
    "train_from_store", "training_labels",
]
