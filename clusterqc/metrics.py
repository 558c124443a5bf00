"""Agreement: how far to trust each judge (model + prompt version) and each reviewer.

Why it is built this way:
- Everything is computed from two plain tables the store hands out (`labels`: each reviewer's
  standing verdict; `proposal_verdicts`: every judge answer), so the CLI, the Agreement page
  and the tests share one code path and the functions can be tested on hand-made frames.
- The human truth for a cluster is its current label: the latest standing decision of any
  reviewer (the same rule as `Store.cluster_label`).
- Unparsed proposals (verdict None) are counted apart, never as agreement or disagreement.
- Point statistics come from scikit-learn (Cohen's kappa, confusion matrix, precision /
  recall) and `krippendorff` (alpha). Only the bootstrap is ours: resampling n paired
  binary ratings with replacement is exactly a multinomial draw over the 4 cells of the 2x2
  table, so B resamples cost O(B) memory instead of O(B*n), and kappa per resample is
  the textbook formula on counts (checked against scikit-learn in the tests).
- Degenerate data (one class only, nothing to compare) gives None plus a reason, never a crash.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_score, recall_score

from clusterqc.model import Verdict

CLASSES = (Verdict.ACCEPTABLE.value, Verdict.UNACCEPTABLE.value)
POSITIVE = Verdict.UNACCEPTABLE.value  # the clusters we drop: the class precision/recall are about
N_BOOT = 1000
SEED = 0
LABEL_COLUMNS = ["cluster_id", "reviewer", "verdict", "decision_id", "decided_at"]
PROPOSAL_COLUMNS = ["id", "cluster_id", "judge", "prompt_version", "verdict", "reason"]


# --------------------------------------------------------------------------- one pair of raters


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa with a percentile bootstrap interval; value None when undefined (see `note`)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""


@dataclass(frozen=True)
class PairStats:
    """Two raters on the same items: `a` (the reference, e.g. human) and `b` (e.g. model)."""

    n: int
    agreement: float | None
    kappa: Kappa
    confusion: list[list[int]]  # rows: a's verdict, columns: b's verdict, in CLASSES order
    precision: float | None  # of b saying Unacceptable, how often a said so too
    recall: float | None  # of a's Unacceptable, how many b found


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def kappa_from_counts(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa for 2x2 tables given as (..., 4) counts [AA, AU, UA, UU]; NaN where undefined."""
    counts = np.asarray(counts, dtype=float)
    aa, au, ua, uu = (counts[..., i] for i in range(4))
    n = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        po = (aa + uu) / n
        pe = ((aa + au) * (aa + ua) + (ua + uu) * (au + uu)) / n**2
        kappa = (po - pe) / (1 - pe)
    return np.where(np.isclose(pe, 1.0), np.nan, kappa)


def bootstrap_kappa_ci(
    counts: Sequence[int], n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95
) -> tuple[float | None, float | None]:
    """Percentile interval of kappa over `n_boot` resamples of the rated pairs (seeded).

    Resamples whose kappa is undefined (all one class) are left out; if more than half are,
    the interval is not reported.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=n_boot)
    kappas = kappa_from_counts(draws)
    kappas = kappas[np.isfinite(kappas)]
    if kappas.size < n_boot / 2:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(kappas, [tail, 100 - tail])
    return float(low), float(high)


def _kappa(a: list[str], b: list[str], counts: np.ndarray, n_boot: int, seed: int) -> Kappa:
    if not a:
        return Kappa(None, note="nothing to compare")
    used = sorted(set(a) | set(b))
    if len(used) == 1:
        return Kappa(None, note=f"undefined: every rating is {used[0]} (kappa needs both classes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(a, b, labels=list(CLASSES))
    if n_boot <= 0:
        return Kappa(_nan_to_none(value))
    low, high = bootstrap_kappa_ci(counts, n_boot, seed)
    note = "" if low is not None else "too few varied items for an interval"
    return Kappa(_nan_to_none(value), low, high, note)


def pair_stats(a: Sequence[str], b: Sequence[str], n_boot: int = N_BOOT, seed: int = SEED) -> PairStats:
    """Agreement statistics of two raters over the same items (both lists of verdict strings)."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"raters rated different numbers of items: {len(a)} and {len(b)}")
    if not a:
        return PairStats(0, None, Kappa(None, note="nothing to compare"), [[0, 0], [0, 0]], None, None)
    cm = confusion_matrix(a, b, labels=list(CLASSES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision = precision_score(a, b, pos_label=POSITIVE, labels=list(CLASSES), zero_division=np.nan)
        recall = recall_score(a, b, pos_label=POSITIVE, labels=list(CLASSES), zero_division=np.nan)
    return PairStats(
        n=len(a),
        agreement=float(np.trace(cm) / len(a)),
        kappa=_kappa(a, b, cm.ravel(), n_boot, seed),
        confusion=cm.tolist(),
        precision=_nan_to_none(precision),
        recall=_nan_to_none(recall),
    )


# --------------------------------------------------------------------------- tables


def labels_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Store.labels() rows as a frame (empty frames keep their columns)."""
    return pd.DataFrame(list(rows), columns=None if rows else LABEL_COLUMNS)


def proposals_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Store.proposal_verdicts() rows as a frame (empty frames keep their columns)."""
    return pd.DataFrame(list(rows), columns=None if rows else PROPOSAL_COLUMNS)


def current_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per reviewed cluster: cluster_id, label, decided_at, reviewers, n_reviews.

    The label is the latest standing decision of any reviewer, as `Store.cluster_label`.
    """
    if labels.empty:
        return pd.DataFrame(columns=["cluster_id", "label", "decided_at", "reviewers", "n_reviews"])
    ordered = labels.sort_values("decision_id")
    grouped = ordered.groupby("cluster_id", sort=False)
    out = grouped.agg(
        label=("verdict", "last"),
        decided_at=("decided_at", "last"),
        reviewers=("reviewer", list),
        n_reviews=("reviewer", "size"),
    )
    return out.reset_index()


def _judged(labels: pd.DataFrame, proposals: pd.DataFrame) -> pd.DataFrame:
    """Every proposal of a reviewed cluster next to the cluster's current label."""
    cur = current_labels(labels)
    return proposals.merge(cur[["cluster_id", "label", "decided_at"]], on="cluster_id", how="inner")


# --------------------------------------------------------------------------- judges vs humans


@dataclass(frozen=True)
class JudgeMetrics:
    """One judge + prompt version against the current human labels."""

    judge: str
    prompt_version: str
    n_proposals: int  # all answers of this judge/prompt, reviewed or not
    n_reviewed: int  # of those, on clusters with a human label
    n_unparsed: int  # reviewed ones whose answer could not be parsed: left out of every rate
    stats: PairStats  # human (rows) vs model (columns) on the parsed reviewed ones

    @property
    def name(self) -> str:
        return f"{self.judge} @ {self.prompt_version}"


def judge_metrics(
    labels: pd.DataFrame, proposals: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED
) -> list[JudgeMetrics]:
    """Per judge and prompt version, in the order they first answered."""
    if proposals.empty:
        return []
    judged = _judged(labels, proposals)
    out = []
    order = proposals.sort_values("id").drop_duplicates(["judge", "prompt_version"])
    for judge, version in zip(order["judge"], order["prompt_version"]):
        mine = judged[(judged["judge"] == judge) & (judged["prompt_version"] == version)]
        parsed = mine[mine["verdict"].notna()]
        n_all = int(((proposals["judge"] == judge) & (proposals["prompt_version"] == version)).sum())
        stats = pair_stats(parsed["label"].tolist(), parsed["verdict"].tolist(), n_boot, seed)
        out.append(JudgeMetrics(judge, version, n_all, len(mine), len(mine) - len(parsed), stats))
    return out


def judge_table(metrics: Sequence[JudgeMetrics]) -> pd.DataFrame:
    """The per-judge summary as one flat table (CLI and page)."""
    rows = []
    for m in metrics:
        s = m.stats
        rows.append(
            {
                "judge": m.judge,
                "prompt_version": m.prompt_version,
                "proposals": m.n_proposals,
                "reviewed": m.n_reviewed,
                "unparsed": m.n_unparsed,
                "compared": s.n,
                "agreement": s.agreement,
                "kappa": s.kappa.value,
                "kappa_low": s.kappa.low,
                "kappa_high": s.kappa.high,
                "precision_unacceptable": s.precision,
                "recall_unacceptable": s.recall,
                "note": s.kappa.note,
            }
        )
    return pd.DataFrame(rows)


def agreement_over_time(labels: pd.DataFrame, proposals: pd.DataFrame, freq: str = "D") -> pd.DataFrame:
    """Model-human agreement per judge/prompt per period of the label's decision date.

    Columns: period (UTC, start of period), judge, prompt_version, n, agreement.
    Unparsed proposals are left out.
    """
    cols = ["period", "judge", "prompt_version", "n", "agreement"]
    judged = _judged(labels, proposals)
    judged = judged[judged["verdict"].notna()]
    if judged.empty:
        return pd.DataFrame(columns=cols)
    when = pd.to_datetime(judged["decided_at"], utc=True, format="ISO8601")
    judged = judged.assign(period=when.dt.tz_localize(None).dt.to_period(freq).dt.start_time,
                           agree=(judged["verdict"] == judged["label"]).astype(float))
    out = judged.groupby(["period", "judge", "prompt_version"], sort=True).agg(
        n=("agree", "size"), agreement=("agree", "mean")
    )
    return out.reset_index()[cols]


def reviewer_model_agreement(
    labels: pd.DataFrame, proposals: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED
) -> pd.DataFrame:
    """Each reviewer's own standing verdicts against each judge/prompt's parsed answers."""
    cols = ["reviewer", "judge", "prompt_version", "n", "agreement", "kappa", "kappa_low", "kappa_high", "note"]
    if labels.empty or proposals.empty:
        return pd.DataFrame(columns=cols)
    parsed = proposals[proposals["verdict"].notna()]
    merged = labels[["cluster_id", "reviewer", "verdict"]].merge(
        parsed[["cluster_id", "judge", "prompt_version", "verdict"]], on="cluster_id", suffixes=("_human", "_model")
    )
    rows = []
    for (reviewer, judge, version), grp in merged.groupby(["reviewer", "judge", "prompt_version"], sort=True):
        s = pair_stats(grp["verdict_human"].tolist(), grp["verdict_model"].tolist(), n_boot, seed)
        rows.append([reviewer, judge, version, s.n, s.agreement, s.kappa.value, s.kappa.low, s.kappa.high, s.kappa.note])
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- reviewers vs reviewers


@dataclass(frozen=True)
class ReviewerAgreement:
    """Agreement between reviewers on clusters that two or more of them reviewed."""

    n_clusters: int  # clusters with >= 2 standing reviews
    alpha: float | None  # Krippendorff's alpha (nominal), all reviewers at once
    alpha_note: str
    kappa: pd.DataFrame  # reviewer x reviewer Cohen's kappa (NaN: undefined or no shared cluster)
    pairs: pd.DataFrame  # reviewer_a, reviewer_b, n, agreement, kappa, note
    reviewers: list[str] = field(default_factory=list)


def reviewer_agreement(labels: pd.DataFrame) -> ReviewerAgreement:
    """Pairwise Cohen's kappa and Krippendorff's alpha over multiply-reviewed clusters."""
    pair_cols = ["reviewer_a", "reviewer_b", "n", "agreement", "kappa", "note"]
    wide = labels.pivot(index="cluster_id", columns="reviewer", values="verdict") if not labels.empty else None
    if wide is None or wide.shape[1] < 2:
        return ReviewerAgreement(
            0, None, "no cluster has two reviews yet", pd.DataFrame(), pd.DataFrame(columns=pair_cols)
        )
    wide = wide[wide.notna().sum(axis=1) >= 2]
    reviewers = sorted(wide.columns)
    wide = wide[reviewers]
    matrix = pd.DataFrame(np.nan, index=reviewers, columns=reviewers)
    rows = []
    for ra, rb in itertools.combinations(reviewers, 2):
        both = wide[[ra, rb]].dropna()
        if both.empty:
            continue
        s = pair_stats(both[ra].tolist(), both[rb].tolist(), n_boot=0)
        matrix.loc[ra, rb] = matrix.loc[rb, ra] = np.nan if s.kappa.value is None else s.kappa.value
        rows.append([ra, rb, s.n, s.agreement, s.kappa.value, s.kappa.note])
    alpha, note = _alpha(wide)
    return ReviewerAgreement(len(wide), alpha, note, matrix, pd.DataFrame(rows, columns=pair_cols), reviewers)


def _alpha(wide: pd.DataFrame) -> tuple[float | None, str]:
    """Krippendorff's alpha (nominal) with reviewers as coders and clusters as units."""
    if wide.empty:
        return None, "no cluster has two reviews yet"
    values = set(wide.stack().unique())
    if len(values) < 2:
        return None, f"undefined: every review is {values.pop()} (alpha needs both classes)"
    coded = wide.apply(lambda col: col.map({c: float(i) for i, c in enumerate(CLASSES)}))
    data = coded.to_numpy(dtype=float).T  # coders x units, NaN = not reviewed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=[0.0, 1.0])
    return _nan_to_none(alpha), ""


# --------------------------------------------------------------------------- disagreements


def disagreements(labels: pd.DataFrame, proposals: pd.DataFrame) -> pd.DataFrame:
    """Reviewed clusters whose current label differs from a judge's parsed answer.

    Columns: cluster_id, label, reviewers, judge, prompt_version, model_verdict, model_reason, decided_at.
    """
    cols = ["cluster_id", "label", "reviewers", "judge", "prompt_version", "model_verdict", "model_reason", "decided_at"]
    if labels.empty or proposals.empty:
        return pd.DataFrame(columns=cols)
    cur = current_labels(labels)
    merged = proposals[proposals["verdict"].notna()].merge(cur, on="cluster_id")
    merged = merged[merged["verdict"] != merged["label"]]
    merged = merged.rename(columns={"verdict": "model_verdict", "reason": "model_reason"})
    merged["reviewers"] = merged["reviewers"].map(", ".join)
    return merged.sort_values(["decided_at", "cluster_id"], ascending=[False, True])[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- everything at once


@dataclass(frozen=True)
class AgreementReport:
    """All the Agreement page shows, computed in one place from one read of the store."""

    n_reviewed: int
    n_proposals: int
    judges: list[JudgeMetrics]
    over_time: pd.DataFrame
    per_reviewer: pd.DataFrame
    reviewers: ReviewerAgreement
    disagreements: pd.DataFrame


def report_from_frames(
    labels: pd.DataFrame, proposals: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED
) -> AgreementReport:
    return AgreementReport(
        n_reviewed=int(labels["cluster_id"].nunique()) if not labels.empty else 0,
        n_proposals=len(proposals),
        judges=judge_metrics(labels, proposals, n_boot, seed),
        over_time=agreement_over_time(labels, proposals),
        per_reviewer=reviewer_model_agreement(labels, proposals, n_boot, seed),
        reviewers=reviewer_agreement(labels),
        disagreements=disagreements(labels, proposals),
    )


def _qualified(rows: list[dict[str, Any]], several: bool) -> list[dict[str, Any]]:
    """With several datasets, cluster ids become `DATASET:ID` so two clusterings' `Cluster_0`
    are two clusters to every statistic (dataset names hold no ':')."""
    if not several:
        return rows
    return [{**r, "cluster_id": f"{r['dataset']}:{r['cluster_id']}"} for r in rows]


def agreement_report(store: Any, n_boot: int = N_BOOT, seed: int = SEED, dataset: str | None = None) -> AgreementReport:
    """Read the store once and compute every agreement statistic, over every dataset or one."""
    several = dataset is None and len(store.dataset_names()) > 1
    labels = labels_frame(_qualified(store.labels(dataset=dataset), several))
    proposals = proposals_frame(_qualified(store.proposal_verdicts(dataset=dataset), several))
    return report_from_frames(labels, proposals, n_boot, seed)


def agreement_by_dataset(store: Any, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Each judge's agreement with the reviewers in each dataset, side by side (one row each)."""
    frames = []
    for name in store.dataset_names():
        table = judge_table(agreement_report(store, n_boot, seed, dataset=name).judges)
        if not table.empty:
            frames.append(table.assign(dataset=name))
    if not frames:
        return pd.DataFrame(columns=["dataset", "judge", "prompt_version", "compared", "agreement", "kappa"])
    out = pd.concat(frames, ignore_index=True)
    return out[["dataset"] + [c for c in out.columns if c != "dataset"]]
