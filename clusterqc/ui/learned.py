"""The Review page's retrain offer: every 10 decisions, one button that retrains the learned judge.

Self-contained on purpose: the page calls `retrain_offer(store)` in one line; what is due, the
training and the proposals are `clusterqc.judges.learned`'s (no Streamlit there). The retrain
runs as a `LearnedJob` on its own thread: at 100,000 clusters it takes half a minute, and the
curator keeps reviewing meanwhile; each key press redraws the line with its progress, and the
first press after it ends shows its summary.
"""

from __future__ import annotations

import streamlit as st

from clusterqc.judges import learned
from clusterqc.store import Store

K_MESSAGE = "cqc_learned_message"
K_JOB = "cqc_learned_job"


def retrain_offer(store: Store, dataset: str | None = None) -> None:
    """A retrain button once 10 decisions have been made since the learned judge last trained."""
    job: learned.LearnedJob | None = st.session_state.get(K_JOB)
    if job is not None and job.running:
        done, total = job.progress
        where = "training" if job.stage == "training" else f"proposing, {done:,} of {total:,} clusters"
        st.text(f"Retraining the learned judge in the background ({where}); keep reviewing.")
        return
    if job is not None:
        del st.session_state[K_JOB]
        st.session_state[K_MESSAGE] = ("warn", job.error) if job.error else ("ok", job.result.summary() if job.result else "")
    message = st.session_state.pop(K_MESSAGE, None)
    if message and message[1]:
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
    st.session_state[K_JOB] = learned.LearnedJob(store.path, dataset).start()
