"""Bulk review: a page of clusters as compact rows; flip the ones you disagree with, record the rest in one key."""

from __future__ import annotations

import streamlit as st

from clusterqc.store import Store
from clusterqc.ui import bulk_view, common, keys


def bulk(store: Store, ctx: common.AppContext) -> None:
    keys.install()
    st.title("Bulk review")
    if ctx.reviewer.problem:
        st.warning(ctx.reviewer.problem + " Until then this page is read-only.", icon=":material/person:")
        return
    if ctx.blind:
        st.info("Bulk review shows every proposal; turn Blind mode off in the sidebar to use it.",
                icon=":material/visibility_off:")
        return
    bulk_view.page(store, ctx)


_store = common.store_or_stop()
with common.page_errors():
    bulk(_store, common.page_context(_store))
