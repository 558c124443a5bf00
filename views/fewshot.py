"""Few-shot: reviewed clusters become the examples of the next prompt, and we measure the result."""

from __future__ import annotations

import streamlit as st

from clusterqc.ui import common
from clusterqc.ui import fewshot as fewshot_ui

st.title("Few-shot")
_store = common.store_or_stop()
with common.db_errors():
    _ctx = common.page_context(_store)
    common.show_dataset(_ctx)
    st.caption("Examples can come from any dataset; they are named DATASET:ID when there are several.")
    fewshot_ui.page(_store, _ctx.reviewer.name)
