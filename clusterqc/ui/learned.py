"""The Review page's retrain offer: every 10 decisions, one button that retrains the learned judge.

Self-contained on purpose: the page calls `retrain_offer(store)` in one line; what is due, the
training and the proposals are `clusterqc.judges.learned`'s (no Streamlit there).
"""

from __future__ import annotations

import streamlit as st

from clusterqc.judges import learned
from clusterqc.store import Store

K_MESSAGE = "cqc_learned_message"


def retrain_offer(store: Store, dataset: str | None = None) -> None:
    """A retrain button once 10 decisions have been made since the learned judge last trained."""
    message = st.session_state.pop(K_MESSAGE, None)
    if message:
        kind, text = message
        (st.success if kind == "ok" else st.warning)(text, icon=":material/model_training:")
    since = learned.retrain_pending(store, dataset) if dataset is not None else 0
    if not since:
        return
    count = f"{since:,}+" if since >= learned.PENDING_CAP else f"{since:,}"
    # One element: a key press redraws this line with the card, and every element costs time.
    st.button(f"Retrain the learned judge on {count} decisions made since it last trained"
              " (the 'least certain first' queue then follows the new model)",
              key="cqc_learned_retrain", icon=":material/model_training:", on_click=_retrain, args=(store, dataset))


def _retrain(store: Store, dataset: str) -> None:
    try:
        with st.spinner("Training on the agreed labels and proposing for every cluster..."):
            run = learned.train_and_propose(store, dataset=dataset)
    except learned.NotEnoughLabels as exc:
        st.session_state[K_MESSAGE] = ("warn", str(exc))
        return
    st.session_state[K_MESSAGE] = ("ok", run.summary())
