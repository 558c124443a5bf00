"""The Bulk review page's widgets: a page of rows, a flip switch per row, one key to record all.

Captions, reasons and ids go through `st.text` / `st.code` only (see review_view.py). The
record button is keyed by the page token and applied at most once per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from clusterqc import bulk
from clusterqc.bulk import BulkPage
from clusterqc.ui.common import AppContext, forget_counts, get_store, one_line

STATE_KEY = "cqc_bulk_state"
SIZE_KEY = "cqc_bulk_size"
VERDICT_COLORS = {"Acceptable": "green", "Unacceptable": "red"}


@dataclass
class BulkState:
    page: BulkPage | None = None
    serial: int = 0
    last: str = ""
    error: str = ""
    settings_seen: tuple = field(default_factory=tuple)


def state() -> BulkState:
    return st.session_state.setdefault(STATE_KEY, BulkState())


def flip_key(page: BulkPage, cluster_id: str) -> str:
    return f"cqc_flip__{page.token}__{cluster_id}"


def _record(token: str) -> None:
    """Callback of the record key: every row of the page on screen becomes one decision."""
    s = state()
    page = s.page
    if page is None or page.token != token:
        s.last = "Ignored: pressed before the next page appeared."
        return
    ctx_reviewer = st.session_state.get("_cqc_context").reviewer.name if st.session_state.get("_cqc_context") else None
    flipped = {r.cluster_id for r in page.rows if st.session_state.get(flip_key(page, r.cluster_id))}
    s.page = None  # spent before anything is written
    try:
        decisions = bulk.record_page(get_store(), ctx_reviewer or "", page, flipped)
    except (PermissionError, ValueError) as exc:
        s.error = one_line(exc)
        return
    forget_counts()
    s.last = f"Saved {len(decisions)} decisions ({len(flipped)} flipped, {len(decisions) - len(flipped)} accepted)."


def page(store, ctx: AppContext) -> None:
    from clusterqc.ui.review_view import progress_line

    progress_line(store, ctx)
    s = state()
    size = st.number_input("Clusters per page", min_value=1, max_value=50, value=bulk.DEFAULT_PAGE, step=1,
                           key=SIZE_KEY, width=180)
    seen = (ctx.reviewer.name, ctx.settings, int(size))
    if s.settings_seen != seen:
        s.page, s.settings_seen = None, seen
    if s.error:
        st.error(s.error, icon=":material/error:")
        s.error = ""
    if s.last:
        st.text("✓ " + s.last if not s.last.startswith("Ignored") else "⚠ " + s.last)
        s.last = ""
    if s.page is None:
        s.serial += 1
        s.page = bulk.load_page(store, ctx.reviewer.name, ctx.settings, int(size), s.serial)
    current = s.page
    if not current.rows:
        st.success("Nothing left to review in bulk for this queue.", icon=":material/task_alt:")
        if current.left_out:
            st.text(f"{len(current.left_out)} cluster(s) without a parsed proposal need single review.")
        s.page = None
        return
    flips = sum(bool(st.session_state.get(flip_key(current, r.cluster_id))) for r in current.rows)
    st.button(
        f"Record this page: {len(current.rows) - flips} accepted, {flips} flipped",
        key=f"cqc_bulk_record__{current.token}", shortcut="A", type="primary",
        on_click=_record, args=(current.token,),
        help="Every row becomes its own decision: the proposal's verdict, or the other one where flipped.",
    )
    for row in current.rows:
        _row(current, row)
    if current.left_out:
        st.text(f"Left for single review (no parsed proposal): {', '.join(current.left_out)}")


def _row(current: BulkPage, row: bulk.BulkRow) -> None:
    flipped = bool(st.session_state.get(flip_key(current, row.cluster_id)))
    verdict = bulk.row_verdict(row, flipped).value
    with st.container(border=True, key=f"cqc_bulk_row__{row.cluster_id}"):
        left, middle, right = st.columns([2, 3, 5], gap="small")
        with left:
            st.code(row.cluster_id, language=None)
            st.toggle("Flip", key=flip_key(current, row.cluster_id),
                      help="Record the other verdict than the proposal's for this cluster.")
        with middle:
            st.badge(("Flipped to " if flipped else "") + verdict, color=VERDICT_COLORS[verdict])
            st.text(f"{row.judge}: {row.reason}")
        with right:
            for n, caption in enumerate(row.captions, 1):
                st.text(f"{n}. {caption}")
