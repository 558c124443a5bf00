"""Cluster evidence: the numbers a curator decides with, beside the verdict.

DataComp's plain CLIP-score filter (the pool's top 30% by CLIP L/14 score) beats the
cluster-based subsets the original pipeline built, so a card shows, per cluster, what it costs
(its share of the pool) and how good its pairs look by that measure (its CLIP score against
the pool's), and the sidebar sets the subset built so far beside that baseline.

Pure functions over plain data (a `Cluster`, a `PoolView`, counts from the store): the Review
page renders what they return, the tests check it without Streamlit.

Scores are DataComp's `clip_l14_similarity_score` cosines in [-1, 1], shown x100 with one
decimal (`CLIP 24.3`), the scale of DataComp's tables.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go

from clusterqc.model import Cluster
from clusterqc.store import Store

QUARTILE_KEYS = ("clip_l14_q1", "clip_l14_median", "clip_l14_q3")
MEAN_KEY = "clip_l14_mean"
FIGURE_HEIGHT = 120


def clip_text(score: float | None) -> str | None:
    """A cosine as DataComp's tables show it: `CLIP 24.3` (x100, one decimal)."""
    return None if score is None else f"CLIP {score * 100:.1f}"


def _count(n: float) -> str:
    """1,234 / 12.3k / 4.56M: sample counts at pool scale, short enough for a sidebar."""
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.1f}k"
    return f"{n:,.0f}"


@dataclass(frozen=True)
class PoolView:
    """What is known of the pool: from a stored profile (exact), else from the clusters' own stats."""

    samples: int | None = None
    clip_mean: float | None = None
    percentiles: tuple[float, ...] | None = None  # 0..100 of the pool's scores
    baseline_cut: float | None = None  # DataComp's CLIP-30% cut
    baseline_samples: int | None = None
    source: str = "none"  # "assignments" (a profile), "clusters" (summed stats) or "none"

    @property
    def quartiles(self) -> tuple[float, float, float] | None:
        p = self.percentiles
        return (p[25], p[50], p[75]) if p and len(p) == 101 else None

    def percentile_of(self, score: float) -> float | None:
        """Where a score sits in the pool (0-100), interpolated between stored percentiles."""
        if not self.percentiles or len(self.percentiles) != 101:
            return None
        return float(np.interp(score, self.percentiles, np.arange(101)))


def pool_view(store: Store, dataset: str | None = None) -> PoolView:
    """A dataset's pool as the store knows it: `clusterqc pool-profile`'s record, else summed cluster stats."""
    profile = store.pool_profile(dataset)
    if profile:
        return PoolView(
            samples=int(profile["samples"]),
            clip_mean=float(profile["mean"]),
            percentiles=tuple(float(x) for x in profile["percentiles"]),
            baseline_cut=float(profile["baseline_cut"]),
            baseline_samples=int(profile["baseline_samples"]),
            source="assignments",
        )
    known = store.pool_from_clusters(dataset)
    if known["sized"] or known["with_stats"]:
        return PoolView(samples=int(known["samples"]) or None, clip_mean=known["clip_l14_mean"], source="clusters")
    return PoolView()


@dataclass(frozen=True)
class Evidence:
    """The facts a card shows for one cluster; empty when its file carried no evidence."""

    facts: tuple[str, ...] = ()  # mean, share, quartiles, pool percentile, CLIP-30% cut (those known)
    clip: str | None = None  # "CLIP 24.3"
    share: float | None = None
    quartiles: tuple[float, float, float] | None = None
    mean: float | None = None
    pool_quartiles: tuple[float, float, float] | None = None
    pool_mean: float | None = None
    baseline_cut: float | None = None
    sample_scores: tuple[tuple[int, str], ...] = field(default=())  # (sample number 1-10, "CLIP 31.2")

    @property
    def empty(self) -> bool:
        return not self.facts and not self.sample_scores


def has_evidence(cluster: Cluster) -> bool:
    """Whether the cluster file gave this cluster any evidence (stats, or a sample's score)."""
    return bool(cluster.stats) or any(s.clip_score is not None for s in cluster.samples)


def _stat(stats: Mapping[str, float] | None, key: str) -> float | None:
    value = (stats or {}).get(key)
    return None if value is None else float(value)


def card_evidence(cluster: Cluster, pool: PoolView, counts: tuple[int, int] | None = None) -> Evidence:
    """The card's evidence: share of the pool, `CLIP 24.3`, quartiles against the pool's, per-sample scores.

    `counts` is (samples, samples above the CLIP-30% cut) from a pool profile, when one was read.
    A cluster without evidence of its own gets an empty `Evidence` (its card is unchanged).
    """
    if not has_evidence(cluster):
        return Evidence()
    stats = cluster.stats or {}
    share = _stat(stats, "share")
    size = cluster.size if cluster.size is not None else _stat(stats, "size")
    if share is None and size is not None and pool.samples:
        share = size / pool.samples
    mean = _stat(stats, MEAN_KEY)
    quartile_values = [_stat(stats, k) for k in QUARTILE_KEYS]
    quartiles = tuple(quartile_values) if all(q is not None for q in quartile_values) else None
    facts = []
    if mean is not None:
        versus = f" (pool {pool.clip_mean * 100:.1f})" if pool.clip_mean is not None else ""
        facts.append(f"{clip_text(mean)} mean{versus}")
    if share is not None:
        of = f" ({size:,.0f} of {pool.samples:,} samples)" if size is not None and pool.samples else ""
        facts.append(f"{share:.2%} of the pool{of}")
    if quartiles is not None:
        q1, median, q3 = (q * 100 for q in quartiles)  # type: ignore[union-attr]
        line = f"quartiles {q1:.1f} / {median:.1f} / {q3:.1f}"
        if pool.quartiles is not None:
            p1, p2, p3 = (q * 100 for q in pool.quartiles)
            line += f" (pool {p1:.1f} / {p2:.1f} / {p3:.1f})"
        facts.append(line)
        where = pool.percentile_of(quartiles[1])  # type: ignore[index]
        if where is not None:
            facts.append(f"median at pool percentile {where:.0f}")
    if pool.baseline_cut is not None and counts is not None and counts[0]:
        facts.append(f"{counts[1] / counts[0]:.1%} pass the CLIP-30% cut ({pool.baseline_cut * 100:.1f})")
    elif pool.baseline_cut is not None and quartiles is not None:
        q1, median, q3 = quartiles  # type: ignore[misc]
        cut = pool.baseline_cut
        part = ("at least 3/4" if q1 >= cut else "at least half" if median >= cut
                else "at least 1/4" if q3 >= cut else "under 1/4")
        facts.append(f"{part} pass the CLIP-30% cut ({cut * 100:.1f})")
    scores = tuple(
        (n, clip_text(s.clip_score) or "") for n, s in enumerate(cluster.samples, start=1) if s.clip_score is not None
    )
    return Evidence(
        facts=tuple(facts), clip=clip_text(mean), share=share, quartiles=quartiles, mean=mean,  # type: ignore[arg-type]
        pool_quartiles=pool.quartiles, pool_mean=pool.clip_mean, baseline_cut=pool.baseline_cut, sample_scores=scores,
    )


def evidence_figure(evidence: Evidence) -> go.Figure | None:
    """A small box per row: the cluster's quartiles (and mean) beside the pool's, the CLIP-30% cut as a line.

    Built from the stored quartiles only (plotly's precomputed q1/median/q3), so it costs nothing
    per sample. None when the cluster has no quartiles.
    """
    if evidence.quartiles is None:
        return None
    rows: list[tuple[str, Sequence[float], float | None]] = [("cluster", evidence.quartiles, evidence.mean)]
    if evidence.pool_quartiles is not None:
        rows.append(("pool", evidence.pool_quartiles, evidence.pool_mean))
    fig = go.Figure()
    for name, (q1, median, q3), mean in rows:
        box: dict[str, Any] = dict(
            y=[html.escape(name)], q1=[q1 * 100], median=[median * 100], q3=[q3 * 100],
            lowerfence=[q1 * 100], upperfence=[q3 * 100], orientation="h", name=name, showlegend=False,
            hoverinfo="x", marker_color="#4c78a8" if name == "cluster" else "#9e9e9e",
        )
        if mean is not None:
            box["mean"] = [mean * 100]
        fig.add_trace(go.Box(**box))
    if evidence.baseline_cut is not None:
        fig.add_vline(x=evidence.baseline_cut * 100, line_dash="dash", line_color="#d62728",
                      annotation_text="CLIP-30% cut", annotation_position="top")
    fig.update_layout(height=FIGURE_HEIGHT, margin=dict(l=10, r=10, t=24, b=10), xaxis_title=None)
    fig.update_xaxes(title_text="CLIP L/14 score x 100")
    return fig


# --------------------------------------------------------------------------- the subset so far


@dataclass(frozen=True)
class SubsetSoFar:
    """The subset the decisions made so far would export, beside DataComp's CLIP-30% baseline."""

    clusters: int
    samples: int
    pool_samples: int | None
    baseline_samples: int | None = None  # what the CLIP-30% filter alone keeps
    both_samples: int | None = None  # samples of kept clusters that also pass that cut

    @property
    def share(self) -> float | None:
        return self.samples / self.pool_samples if self.pool_samples else None

    def lines(self) -> list[str]:
        """The sidebar's text, one fact per line."""
        share = f" ({self.share:.1%} of the pool)" if self.share is not None else ""
        clusters = f"{self.clusters:,} cluster{'' if self.clusters == 1 else 's'}"
        out = [f"Subset so far: {clusters}, {_count(self.samples)} samples{share}"]
        if self.baseline_samples is not None and self.pool_samples:
            out.append(f"CLIP-30% baseline: {_count(self.baseline_samples)} samples"
                       f" ({self.baseline_samples / self.pool_samples:.1%} of the pool)")
            if self.both_samples is not None:
                out.append(f"Both (kept clusters, top 30% CLIP): {_count(self.both_samples)}"
                           f" ({self.both_samples / self.pool_samples:.1%})")
        else:
            out.append("CLIP-30% baseline: unknown until `clusterqc pool-profile --assignments FILE` is run")
        return out


def subset_so_far(
    store: Store, pool: PoolView, keep: Sequence[str] = ("Acceptable",), dataset: str | None = None
) -> SubsetSoFar:
    """A dataset's kept clusters (latest standing labels) and their samples, from the store's sums."""
    sums = store.subset_so_far(keep, dataset)
    profiled = pool.source == "assignments"
    return SubsetSoFar(
        clusters=sums["clusters"],
        samples=sums["samples"],
        pool_samples=pool.samples,
        baseline_samples=pool.baseline_samples if profiled else None,
        both_samples=sums["above_cut"] if profiled else None,
    )
