"""Cluster evidence on screen: the card's CLIP facts and small chart, the sidebar's subset so far.

Self-contained so the Review page needs one call (`card`) and the sidebar one (`sidebar`).
Only our own formatted numbers are shown, always through `st.text` (never markdown); the chart's
two row names are fixed strings.
"""

from __future__ import annotations

import streamlit as st

from clusterqc import evidence
from clusterqc.model import Cluster
from clusterqc.store import Store

SUBSET_TTL_S = 5
POOL_TTL_S = 60  # the pool changes only with an import or a new profile (which calls `forget`)


@st.cache_data(ttl=POOL_TTL_S, show_spinner=False, max_entries=64)
def _pool(db_key: str, dataset: str | None, _store: Store) -> evidence.PoolView:
    """The pool view, refreshed every minute: summing 100,000 clusters' stats (~50-130 ms) per
    rerun would be waste, and the pool only changes with an import or a new profile."""
    return evidence.pool_view(_store, dataset)


def pool(store: Store, dataset: str | None = None) -> evidence.PoolView:
    """The pool of one dataset (None: the only one)."""
    return _pool(str(store.path.resolve()), store.resolve_dataset(dataset), store)


def facts(store: Store, cluster: Cluster) -> list[str]:
    """The card's facts line additions (mean CLIP beside the pool's, share of the pool), or none."""
    if not evidence.has_evidence(cluster):
        return []
    ev = evidence.card_evidence(
        cluster, pool(store, cluster.dataset), store.pool_cluster(cluster.id, store.resolve_dataset(cluster.dataset))
    )
    return [] if ev.empty else list(ev.facts[:2])


def card(store: Store, cluster: Cluster) -> None:
    """The evidence box of one cluster; nothing at all (and no query) when its file carried none."""
    if not evidence.has_evidence(cluster):
        return
    ev = evidence.card_evidence(
        cluster, pool(store, cluster.dataset), store.pool_cluster(cluster.id, store.resolve_dataset(cluster.dataset))
    )
    if ev.empty:
        return
    with st.container(border=True, key="cqc_evidence"):
        left, right = st.columns([3, 2], vertical_alignment="center")
        with left:
            st.text(" · ".join(ev.facts[:2]),
                    help="CLIP L/14 image-text score of the cluster's samples (x100), and its share of the pool")
            if ev.facts[2:]:
                st.text(" · ".join(ev.facts[2:]))
            # Each sample's own score is a tag beside its caption (card_html.sample_html).
        with right:
            fig = evidence.evidence_figure(ev)
            if fig is not None:
                st.plotly_chart(fig, key="cqc_evidence_chart", config={"displayModeBar": False})


@st.cache_data(ttl=SUBSET_TTL_S, show_spinner=False, max_entries=64)
def _subset_lines(db_key: str, dataset: str, _store: Store) -> list[str]:
    view = _pool(db_key, dataset, _store)
    if view.source == "none":
        return []  # no sizes, no stats, no profile: nothing to set a subset against
    return evidence.subset_so_far(_store, view, dataset=dataset).lines()


def sidebar(store: Store, dataset: str | None = None) -> None:
    """The subset the decisions so far would export, beside DataComp's CLIP-30% baseline.

    Cached for a few seconds like the progress bars: a SUM over every label on each keystroke
    is not needed to the second.
    """
    for line in _subset_lines(str(store.path.resolve()), store.resolve_dataset(dataset), store):
        st.text(line)


def forget() -> None:
    """Drop the cached pool and subset figures (after recording a pool profile)."""
    _pool.clear()
    _subset_lines.clear()
