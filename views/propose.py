"""Propose: choose a judge, preview its prompt, run it over the clusters, see what failed."""

from __future__ import annotations

import streamlit as st

from clusterqc.ui import common
from clusterqc.ui import propose as propose_ui

st.title("Propose")
_store = common.store_or_stop()
with common.page_errors():
    _ctx = common.page_context(_store)
    common.show_dataset(_ctx)
    propose_ui.page(_store, _ctx.dataset)
