"""Plotly figures for the Agreement page, built from `clusterqc.metrics` results.

Plain plotly (no Streamlit) so the figures can be built and checked in tests. Judge and
reviewer names are data: plotly.js reads a small HTML subset in labels (links included), so
every name is HTML-escaped before it becomes a label and shows as the literal text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from clusterqc.metrics import CLASSES, JudgeMetrics

HEIGHT = 320


def plain(text: object) -> str:
    """A label plotly shows literally (no tags, no links)."""
    return html.escape(str(text), quote=False)


def _layout(fig: go.Figure, title: str, **kw: object) -> go.Figure:
    fig.update_layout(title=title, height=HEIGHT, margin=dict(l=10, r=10, t=40, b=10), **kw)
    return fig


def confusion_heatmap(m: JudgeMetrics) -> go.Figure:
    """Human label (rows) against the model's verdict (columns), with counts in the cells."""
    z = m.stats.confusion
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"model: {c}" for c in CLASSES],
            y=[f"human: {c}" for c in CLASSES],
            text=[[str(v) for v in row] for row in z],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}<br>%{x}<br>%{z} clusters<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, plain(f"{m.name}: {m.stats.n} compared, {m.n_unparsed} unparsed"))


def kappa_chart(metrics: Sequence[JudgeMetrics]) -> go.Figure:
    """Cohen's kappa per judge/prompt with its 95% bootstrap interval (undefined ones left out)."""
    shown = [m for m in metrics if m.stats.kappa.value is not None]
    names = [plain(m.name) for m in shown]
    values = [m.stats.kappa.value for m in shown]
    plus = [(m.stats.kappa.high - m.stats.kappa.value) if m.stats.kappa.high is not None else 0 for m in shown]
    minus = [(m.stats.kappa.value - m.stats.kappa.low) if m.stats.kappa.low is not None else 0 for m in shown]
    fig = go.Figure(
        go.Scatter(
            x=values,
            y=names,
            mode="markers",
            marker=dict(size=10),
            error_x=dict(type="data", array=plus, arrayminus=minus, symmetric=False),
            customdata=[[m.stats.n] for m in shown],
            hovertemplate="%{y}<br>kappa %{x:.2f}<br>n = %{customdata[0]}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[-1, 1], title="Cohen's kappa (95% bootstrap interval)", zeroline=True)
    return _layout(fig, "Kappa per judge and prompt version")


def over_time_chart(over_time: pd.DataFrame) -> go.Figure:
    """Model-human agreement per decision day, one line per judge/prompt."""
    fig = go.Figure()
    for (judge, version), grp in over_time.groupby(["judge", "prompt_version"], sort=False):
        fig.add_trace(
            go.Scatter(
                x=grp["period"],
                y=grp["agreement"],
                mode="lines+markers",
                marker=dict(size=9),  # one day of data is one point: make it easy to see
                name=plain(f"{judge} @ {version}"),
                customdata=grp[["n"]].to_numpy(),
                hovertemplate="%{x|%Y-%m-%d}<br>agreement %{y:.0%}<br>n = %{customdata[0]}<extra></extra>",
            )
        )
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="agreement")
    fig.update_xaxes(title="decision date (UTC)", **day_axis(over_time["period"]))
    return _layout(fig, "Model agreement over time")


DAY_MS = 86_400_000
EDGE = pd.Timedelta(hours=12)
MAX_DAY_TICKS = 10


def day_axis(days: pd.Series) -> dict[str, object]:
    """A date axis whose ticks are whole days, for points binned by day.

    Left to itself plotly zooms one day of data (or two close days) into hours and
    milliseconds ("23:59:59.9995"); here the axis spans at least a day either side of the
    data, ticks every n whole days (at most ~10 ticks) and labels them as dates.
    """
    first, last = pd.Timestamp(days.min()), pd.Timestamp(days.max())
    span_days = max((last - first).days, 0)
    step = max(1, -(-span_days // MAX_DAY_TICKS))
    pad = pd.Timedelta(days=max(1, step) / 2 if span_days else 1)
    return dict(
        type="date",
        range=[(first - pad - EDGE).isoformat(), (last + pad + EDGE).isoformat()],  # edge days' ticks show
        tick0=first.isoformat(),
        dtick=step * DAY_MS,
        tickformat="%b %d, %Y",
        hoverformat="%Y-%m-%d",
    )


def reviewer_model_chart(per_reviewer: pd.DataFrame) -> go.Figure:
    """Each reviewer's agreement with each judge/prompt, as grouped bars."""
    fig = go.Figure()
    for (judge, version), grp in per_reviewer.groupby(["judge", "prompt_version"], sort=False):
        fig.add_trace(
            go.Bar(
                x=[plain(r) for r in grp["reviewer"]],
                y=grp["agreement"],
                name=plain(f"{judge} @ {version}"),
                customdata=grp[["n"]].to_numpy(),
                hovertemplate="%{x}<br>agreement %{y:.0%}<br>n = %{customdata[0]}<extra></extra>",
            )
        )
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="agreement with the model")
    return _layout(fig, "Per-reviewer agreement with the model", barmode="group")


def reviewer_kappa_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Reviewer x reviewer Cohen's kappa; blank where undefined or no shared cluster."""
    names = [plain(n) for n in matrix.index]
    z = matrix.to_numpy(dtype=float)
    text = [["" if pd.isna(v) else f"{v:.2f}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=names, y=names, text=text, texttemplate="%{text}", zmin=-1, zmax=1,
            colorscale="RdBu", hovertemplate="%{y} / %{x}<br>kappa %{z:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Reviewer x reviewer Cohen's kappa")
