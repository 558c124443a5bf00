"""The Review page's widgets: one cluster, its proposals, its history, the action keys.

Everything that came from a file or a model (captions, ids, reasons, raw answers, notes,
judge names) goes through `st.text`, `st.code` or `st.dataframe`, which show text as text;
markdown-rendering calls (`st.markdown`, `st.caption`, `st.write`, alert bodies) only ever
get our own fixed strings. A caption like `<img src=x onerror=alert(1)>` stays a caption.

Key presses are buttons with `shortcut=`. Their callbacks only record which key was pressed
on which cluster (with the note); the page applies it at the top of the next run, so the
next cluster is on screen in the same rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from clusterqc import bootstrap
from clusterqc.review import ACTION_KEYS, ClusterView, ReviewSession, SessionState
from clusterqc.store import Store
from clusterqc.ui.common import AppContext, K_JUMP_PENDING, forget_counts, one_line

STATE_KEY = "cqc_review_state"
PENDING_KEY = "cqc_pending_action"
NOTE_KEY = "cqc_note"
THUMBS_KEY = "cqc_thumbs"
LINK_SEEN_KEY = "cqc_link_seen"
LINK_SET_KEY = "cqc_link_set"
EXPORT_PAGE = "views/export.py"

ACTION_LABELS: dict[str, str] = {
    "accept": "Accept",
    "override": "Override",
    "acceptable": "Acceptable",
    "unacceptable": "Unacceptable",
    "skip": "Skip",
    "undo": "Undo",
}
ACTION_HELP: dict[str, str] = {
    "accept": "Record the proposal's verdict as yours.",
    "override": "Record the other verdict than the proposal's.",
    "acceptable": "Record Acceptable.",
    "unacceptable": "Record Unacceptable.",
    "skip": "Leave this cluster for now (it comes back when you revisit skipped ones).",
    "undo": "Revert your last decision (appends an undo row) and show that cluster again.",
}
VERDICT_COLORS = {"Acceptable": "green", "Unacceptable": "red"}


def session_state() -> SessionState:
    return st.session_state.setdefault(STATE_KEY, SessionState())


# --------------------------------------------------------------------------- actions


def _press(action: str, cluster_id: str) -> None:
    """Button callback: remember the key and the note, and clear the note for the next cluster."""
    st.session_state[PENDING_KEY] = (action, cluster_id, st.session_state.get(NOTE_KEY, ""))
    st.session_state[NOTE_KEY] = ""


def apply_pending(session: ReviewSession) -> bool:
    """Apply the key pressed in the previous run (at most once); True if one was applied."""
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending is None:
        return False
    action, cluster_id, note = pending
    try:
        session.act(action, cluster_id, note)
    except PermissionError as exc:
        st.warning(str(exc), icon=":material/person:")
    except ValueError as exc:
        st.error(one_line(exc), icon=":material/error:")
    return True


def follow_links(session: ReviewSession) -> None:
    """Jump to a cluster named in the sidebar field or in the URL (`?cluster=...`)."""
    wanted = st.session_state.pop(K_JUMP_PENDING, None)
    url = st.query_params.get("cluster")
    if not wanted and url and url not in (st.session_state.get(LINK_SEEN_KEY), st.session_state.get(LINK_SET_KEY)):
        wanted = url
    st.session_state[LINK_SEEN_KEY] = url
    if wanted and not session.jump(wanted):
        st.error("No cluster with that id:", icon=":material/search_off:")
        st.text(wanted)


def sync_link(cluster_id: str | None) -> None:
    """Keep `?cluster=` pointing at the cluster on screen, so the URL links to it."""
    st.session_state[LINK_SET_KEY] = cluster_id
    st.session_state[LINK_SEEN_KEY] = cluster_id
    if cluster_id is None:
        if "cluster" in st.query_params:
            del st.query_params["cluster"]
    elif st.query_params.get("cluster") != cluster_id:
        st.query_params["cluster"] = cluster_id


def action_bar(view: ClusterView, ctx: AppContext) -> None:
    """The action buttons (each with its key) and the optional note."""
    actions = view.actions(ctx.blind)
    disabled = ctx.reviewer.name is None
    columns = st.columns(len(actions))
    for column, action in zip(columns, actions):
        column.button(
            _action_label(action, view),
            key=f"cqc_btn_{action}",
            shortcut=ACTION_KEYS[action],
            help=ACTION_HELP[action],
            on_click=_press,
            args=(action, view.cluster.id),
            disabled=disabled,
            type="primary" if action in ("accept", "acceptable") else "secondary",
            width="stretch",
        )
    st.text_input("Note (optional)", key=NOTE_KEY, placeholder="why, if it is not obvious", disabled=disabled)


def _action_label(action: str, view: ClusterView) -> str:
    """Accept and Override name the verdict they record, so a keystroke is never a guess."""
    verdict = view.primary.verdict if view.primary is not None else None
    if action == "accept" and verdict is not None:
        return f"Accept: {verdict.value}"
    if action == "override" and verdict is not None:
        return f"Override: {verdict.other.value}"
    return ACTION_LABELS[action]


# --------------------------------------------------------------------------- one cluster


def header(view: ClusterView) -> None:
    info = view.info
    st.code(view.cluster.id, language=None)
    size = "unknown" if view.cluster.size is None else f"{view.cluster.size:,}"
    facts = [f"size: {size}", f"dataset: {view.cluster.dataset or '-'}", f"reviews: {info.get('n_reviews', 0)}"]
    if info.get("source"):
        facts.append(f"source: {info['source']}")
    st.text(" · ".join(facts))
    if view.my_verdict is not None:
        st.text(f"You decided this cluster: {view.my_verdict.value}")


def samples(view: ClusterView) -> None:
    """The 5 closest and 5 furthest samples, numbered 1-10 as the hints refer to them."""
    thumbs = view.has_urls and st.toggle("Show thumbnails", key=THUMBS_KEY)
    left, right = st.columns(2)
    closest = view.cluster.closest
    for column, title, items, start in (
        (left, "Closest to the centre", closest, 0),
        (right, "Furthest from the centre", view.cluster.furthest, len(closest)),
    ):
        with column:
            st.markdown(f"**{title}**")
            for offset, sample in enumerate(items):
                n = start + offset
                st.text(f"{n + 1}. {sample.text}")
                hints = view.hints[n] if n < len(view.hints) else ()
                if hints:
                    st.text("   ⚑ " + "; ".join(hints))
                if thumbs and sample.url:
                    _thumbnail(sample.url)


def _thumbnail(url: str) -> None:
    """A small image from a URL or a local image path; a one-line note when it cannot be shown."""
    source: Any = url if url.startswith(("http://", "https://")) else Path(url)
    if isinstance(source, Path) and not source.is_file():
        st.text(f"(no image at {url})")
        return
    try:
        st.image(str(source), width=160)
    except Exception as exc:  # noqa: BLE001 - a broken image must not break the page
        st.text(f"(image not shown: {one_line(exc)})")


def proposals(view: ClusterView, blind: bool) -> None:
    if not view.proposals:
        st.info("No proposal for this cluster yet: decide with 1 (Acceptable) or 2 (Unacceptable).")
        return
    if not view.proposals_visible(blind):
        st.info(f"Blind mode: {len(view.proposals)} proposal(s) hidden until you decide.", icon=":material/visibility_off:")
        return
    for proposal in view.proposals:
        with st.container(border=True):
            if proposal.verdict is None:
                st.badge("Unparsed", color="gray", icon=":material/help:")
            else:
                st.badge(proposal.verdict.value, color=VERDICT_COLORS[proposal.verdict.value])
            primary = " (Accept / Override answer this one)" if view.primary and proposal.id == view.primary.id else ""
            st.text(f"{proposal.judge} · prompt {proposal.prompt_version}{primary}")
            if proposal.reason:
                st.text(proposal.reason)
            if proposal.verdict is None:
                st.text(f"Could not parse: {proposal.parse_error or 'no verdict found'}")
                st.code(proposal.raw or "(empty answer)", language=None, wrap_lines=True)


def history(view: ClusterView) -> None:
    if not view.history:
        st.text("No decisions yet.")
        return
    rows = [
        {
            "when": d.created_at,
            "reviewer": d.reviewer,
            "action": d.action,
            "verdict": d.verdict.value if d.verdict else "(none)",
            "agrees with model": {None: "", True: "yes", False: "no"}[d.agrees],
            "note": d.note,
        }
        for d in reversed(view.history)
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True)


# --------------------------------------------------------------------------- empty states


def no_clusters(store: Store) -> None:
    st.info("There are no clusters in this database yet.", icon=":material/inbox:")
    st.markdown("Import a cluster file (luvdatacomp JSON, JSONL, CSV or Parquet) from a shell:")
    st.code("clusterqc import cluster_samples.json", language="bash")
    st.markdown("or load the bundled demo: 60 real DataComp-small clusters with offline proposals.")
    st.button("Load the demo clusters", key="cqc_load_demo", type="primary", on_click=_load_demo, args=(store,))


def _load_demo(store: Store) -> None:
    """Callback (runs before the next script run, so the sidebar already counts the new clusters)."""
    try:
        added = bootstrap.load_demo(store)
        judged = bootstrap.run_offline_judge(store)
    except (ImportError, OSError, ValueError) as exc:
        st.session_state[STATE_KEY] = SessionState(last=f"Demo not loaded: {one_line(exc)}")
        return
    forget_counts()
    st.session_state[STATE_KEY] = SessionState(last=f"Imported {added} demo clusters, {judged} offline proposals.")


def no_proposals(store: Store) -> None:
    st.info("No judge has proposed verdicts yet. You can review without them (keys 1 and 2), "
            "or let the offline judge (local heuristics, no network) propose one for every cluster.")
    st.button("Run the offline judge", key="cqc_run_offline", on_click=_run_offline, args=(store,))


def _run_offline(store: Store) -> None:
    try:
        added = bootstrap.run_offline_judge(store)
    except ImportError as exc:
        session_state().last = f"Offline judge not available: {one_line(exc)}"
        return
    state = session_state()
    state.last, state.current, state.done = f"{added} offline proposals added.", state.current, False


def queue_empty(state: SessionState, ctx: AppContext) -> None:
    if ctx.settings.filter == "unreviewed" and not ctx.settings.search:
        st.success("Everything is reviewed: no cluster needs a review from you.", icon=":material/task_alt:")
    else:
        st.success("Nothing left in this queue for these filters.", icon=":material/task_alt:")
    if state.skipped:
        st.button(f"Revisit the {len(state.skipped)} cluster(s) you skipped", key="cqc_revisit",
                  on_click=_revisit, shortcut="S")
    try:
        st.page_link(EXPORT_PAGE, label="Export the labels", icon=":material/download:")
    except Exception:  # noqa: BLE001 - the page is registered only when app.py runs
        st.markdown("Export the labels from the Export page.")


def _revisit() -> None:
    session_state().restart_pass()
