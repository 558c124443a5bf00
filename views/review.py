"""Review: one cluster at a time on one screen, its samples beside the model's verdict, decided by keyboard."""

from __future__ import annotations

import streamlit as st

from clusterqc.review import ReviewSession, load_view, pace, today_start
from clusterqc.store import Store
from clusterqc.ui import common, keys
from clusterqc.ui import review_view as rv


def progress_line(store: Store, ctx: common.AppContext) -> None:
    """Mine / reviewed / all, and today's pace with an estimate of the time left."""
    remaining = ctx.total - ctx.reviewed if ctx.settings.wanted == 1 else store.clusters_needing(ctx.settings.wanted)
    line = f"Mine {ctx.mine:,} / {ctx.total:,} · Reviewed {ctx.reviewed:,} / {ctx.total:,}"
    if ctx.reviewer.name:
        today, first = store.decisions_since(ctx.reviewer.name, today_start())
        line += " · " + pace(today, first, remaining).line()
    st.text(line)


def review(store: Store, ctx: common.AppContext) -> None:
    keys.install()
    problem = st.session_state.pop(common.BOOTSTRAP_PROBLEM_KEY, None)
    if problem:
        st.warning("The first start could not finish setting up the demo:", icon=":material/warning:")
        st.text(problem)
    if ctx.total == 0:
        st.title("Review")
        rv.no_clusters(store)
        return
    state = rv.session_state()
    session = ReviewSession(store, state)
    session.configure(ctx.reviewer.name, ctx.settings)
    rv.follow_links(session, common.K_JUMP_PENDING)
    progress_line(store, ctx)
    if ctx.reviewer.problem:
        st.warning(ctx.reviewer.problem + " Until then this page is read-only.", icon=":material/person:")
    rv.show_messages(state)
    if not store.has_proposals():
        rv.no_proposals(store)
    cluster_id = session.current()
    # Everything the card shows is read before anything of it is drawn, and the card goes
    # into one placeholder: the browser gets the new card in one burst.
    view = load_view(store, cluster_id, ctx.reviewer.name) if cluster_id else None
    rv.sync_link(view.cluster.id if view else None)
    if view is None:
        rv.queue_empty(session, ctx)
        return
    shown = session.show(view, ctx.blind)
    facts = rv.facts_line(view)
    slot = st.empty()
    with slot.container(key=f"cqc_card_{state.serial}"):
        rv.card(view, shown, ctx, facts)
    rv.below_card(store, view, ctx.reviewer.name)


_store = common.store_or_stop()
with common.page_errors():
    review(_store, common.page_context(_store))
