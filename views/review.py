"""Review: one cluster at a time on one screen, its samples beside the model's verdict, decided by keyboard."""

from __future__ import annotations

import streamlit as st

from clusterqc.review import ReviewSession, load_view
from clusterqc.store import Store
from clusterqc.ui import common, keys
from clusterqc.ui import evidence as evidence_ui
from clusterqc.ui import learned as learned_ui
from clusterqc.ui import review_view as rv


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
    if ctx.reviewer.problem:
        st.warning(ctx.reviewer.problem + " Until then this page is read-only.", icon=":material/person:")
    review_card(store, ctx)


@st.fragment
def review_card(store: Store, ctx: common.AppContext) -> None:
    """Everything a key press changes, as a fragment: a key reruns this, not the sidebar.

    Why: a key press to the next cluster is the page's hot path; redrawing the sidebar and the
    navigation for each one roughly doubled the time to the next card (bench/RESULTS.md). The
    sidebar's choices (reviewer, queue, blind mode) come in through `ctx`; changing one of them
    reruns the whole page, and with it this fragment.
    """
    state = rv.session_state()
    session = ReviewSession(store, state)
    session.configure(ctx.reviewer.name, ctx.settings)
    rv.follow_links(session, common.K_JUMP_PENDING)
    rv.progress_line(store, ctx)
    rv.show_messages(state)
    if not store.has_proposals(dataset=ctx.dataset):
        rv.no_proposals(store)
    learned_ui.retrain_offer(store, ctx.dataset)
    cluster_id = session.current()
    # Everything the card shows is read before anything of it is drawn, and the card goes
    # into one placeholder: the browser gets the new card in one burst.
    view = load_view(store, cluster_id, ctx.reviewer.name, dataset=ctx.dataset) if cluster_id else None
    rv.sync_link(view.cluster.id if view else None)
    if view is None:
        rv.queue_empty(session, ctx)
        return
    shown = session.show(view, ctx.blind)
    facts = rv.facts_line(view) + evidence_ui.facts(store, view.cluster)
    slot = st.empty()
    with slot.container(key="cqc_card"):  # one key for every card: the browser updates it, not rebuilds it
        rv.card(view, shown, ctx, facts)
    evidence_ui.card(store, view.cluster)  # the full evidence (chart, per-sample scores) right under the card
    rv.below_card(store, view, ctx.reviewer.name)


_store = common.store_or_stop()
with common.page_errors():
    review(_store, common.page_context(_store))
