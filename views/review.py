"""Review: one cluster at a time, its samples beside the model's verdict, decided by keyboard."""

from __future__ import annotations

import streamlit as st

from clusterqc.review import ReviewSession, load_view
from clusterqc.store import Store
from clusterqc.ui import common
from clusterqc.ui import fewshot as fewshot_ui
from clusterqc.ui import review_view as rv


def review(store: Store, ctx: common.AppContext) -> None:
    problem = st.session_state.pop(common.BOOTSTRAP_PROBLEM_KEY, None)
    if problem:
        st.warning("The first start could not finish setting up the demo:", icon=":material/warning:")
        st.text(problem)
    if ctx.total == 0:
        rv.no_clusters(store)
        return
    state = rv.session_state()
    session = ReviewSession(store, state)
    session.configure(ctx.reviewer.name, ctx.settings)
    if rv.apply_pending(session):
        common.refresh_progress(ctx, store)
    rv.follow_links(session)
    if ctx.reviewer.problem:
        st.warning(ctx.reviewer.problem + " Until then this page is read-only.", icon=":material/person:")
    if state.last:
        st.text("✓ " + state.last)
    if not store.has_proposals(dataset=ctx.dataset):
        rv.no_proposals(store)
    cluster_id = session.current()
    view = load_view(store, cluster_id, ctx.reviewer.name, dataset=ctx.dataset) if cluster_id else None
    rv.sync_link(view.cluster.id if view else None)
    if view is None:
        rv.queue_empty(state, ctx)
        return
    rv.header(view)
    rv.action_bar(view, ctx)
    # The proposal sits right under the keys that answer it; the samples follow.
    st.subheader("Proposals")
    rv.proposals(view, ctx.blind)
    st.subheader("Samples")
    rv.samples(view)
    st.subheader("Decision history")
    rv.history(view)
    fewshot_ui.mark_control(store, view.cluster.id, ctx.reviewer.name)


st.title("Review")
_store = common.store_or_stop()
with common.page_errors():
    review(_store, common.page_context(_store))
