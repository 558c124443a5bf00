"""The Review page's widgets: one cluster card on one screen, decided by keyboard.

Everything that came from a file or a model (captions, ids, reasons, raw answers, notes,
judge names, file names) goes through `st.text`, `st.code`, `st.dataframe`, or the escaped
HTML of `card_html.py`, all of which show text as text; markdown-rendering calls
(`st.markdown`, `st.caption`, `st.badge`, alert bodies) and the page's own script/style
(`keys.py`) only ever get our own fixed strings. A caption like `<img src=x onerror=alert(1)>`
stays a caption.

Key presses are buttons with `shortcut=`. Each press carries the token of the card the browser
had on screen: the card's last widget is a hidden field holding its token, which the browser
sends with every press (Streamlit sends all widget values with a trigger). `ReviewSession.press`
applies a press at most once and only to the card rendered with that token. The field is the
last part of the card, so the browser holds the new token only after it has received the whole
new card; a press made before that carries the old, spent token and is dropped. The buttons
keep their keys from card to card (a key per card made the browser rebuild them on every press,
bench/RESULTS.md), and the card is drawn after everything it shows has been read from the
database, so the browser gets it in one burst and never shows old samples under the new header.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clusterqc import bootstrap, fewshot
from clusterqc.review import ACTION_KEYS, Card, ClusterView, ReviewSession, SessionState, human_time, pace, today_start
from clusterqc.store import Store
from clusterqc.ui import card_html
from clusterqc.ui.common import AppContext, cluster_counts, forget_counts, get_store, one_line

STATE_KEY = "cqc_review_state"
NOTE_KEY = "cqc_note"
THUMBS_KEY = "cqc_thumbs"
LINK_SEEN_KEY = "cqc_link_seen"
LINK_SET_KEY = "cqc_link_set"
LINKS_KEPT = 50  # clusters this page put into the URL lately (see follow_links)
ERROR_KEY = "cqc_review_error"
TOKEN_KEY = "cqc_token"  # the hidden field with the token of the card on screen (see the module docstring)
EXPORT_PAGE = "views/export.py"
CAPTION_CHARS = 400  # longer captions are cut here on the card (the full text is in "All captions")

ACTION_LABELS: dict[str, str] = {
    "accept": "Accept",
    "override": "Override",
    "acceptable": "Acceptable",
    "unacceptable": "Unacceptable",
    "skip": "Skip",
    "undo": "Undo",
}


def session_state() -> SessionState:
    return st.session_state.setdefault(STATE_KEY, SessionState())


def button_key(action: str, tone: str = "plain") -> str:
    """A widget key per action, the same for every card (the token travels in TOKEN_KEY). The
    tone (the colour of the verdict it records) is in the key so the page style can colour it."""
    return f"cqc_btn_{action}__{tone}"


# --------------------------------------------------------------------------- actions


def _press(action: str) -> None:
    """Button callback: apply the key to the card it was pressed on (the token the browser sent
    with the press), with the note typed there."""
    st.session_state.pop(ERROR_KEY, None)
    note = st.session_state.get(NOTE_KEY, "") or ""
    token = str(st.session_state.get(TOKEN_KEY) or "")
    session = ReviewSession(get_store(), session_state())
    try:
        decision = session.press(action, token, note)
    except PermissionError as exc:
        st.session_state[ERROR_KEY] = str(exc)
        return
    except ValueError as exc:
        st.session_state[ERROR_KEY] = one_line(exc)
        return
    if session.state.card is None:  # the press was applied: the note went with it
        st.session_state[NOTE_KEY] = ""
    if decision is not None:
        forget_counts()  # "Reviewed" counts this decision in this rerun, like "Mine"


def show_messages(state: SessionState) -> None:
    """The line about the last action, a dropped key press, or an error from the callback."""
    error = st.session_state.pop(ERROR_KEY, None)
    if error:
        st.error(error, icon=":material/error:")
    state.applied = False
    if state.ignored:
        st.text("⚠ " + state.ignored)
        state.ignored = ""
    elif state.last:
        st.text("✓ " + state.last)


def follow_links(session: ReviewSession, jump_pending_key: str) -> None:
    """Jump to a cluster named in the sidebar field or in the URL (`?cluster=...`).

    A URL naming a cluster this page itself put there is not a link to follow: a key press
    sent before the browser saw the newer URL carries the older one, and following it would
    bring a just-decided cluster back on screen.
    """
    wanted = st.session_state.pop(jump_pending_key, None)
    url = st.query_params.get("cluster")
    ours = st.session_state.get(LINK_SET_KEY) or []
    if not wanted and url and url != st.session_state.get(LINK_SEEN_KEY) and url not in ours:
        wanted = url
    st.session_state[LINK_SEEN_KEY] = url
    if wanted and not session.jump(wanted):
        st.error("No cluster with that id:", icon=":material/search_off:")
        st.text(wanted)


def sync_link(cluster_id: str | None) -> None:
    """Keep `?cluster=` pointing at the cluster on screen, so the URL links to it."""
    ours = [c for c in (st.session_state.get(LINK_SET_KEY) or []) if c != cluster_id]
    st.session_state[LINK_SET_KEY] = (ours + [cluster_id])[-LINKS_KEPT:] if cluster_id else ours[-LINKS_KEPT:]
    st.session_state[LINK_SEEN_KEY] = cluster_id
    if cluster_id is None:
        if "cluster" in st.query_params:
            del st.query_params["cluster"]
    elif st.query_params.get("cluster") != cluster_id:
        st.query_params["cluster"] = cluster_id


# --------------------------------------------------------------------------- the card


def progress_line(store: Store, ctx: AppContext) -> None:
    """Mine / reviewed / all, and today's pace with an estimate of the time left (fresh on every
    run: it replaces the sidebar's bars on the review pages, which a key press does not redraw)."""
    reviewed, total = cluster_counts(store, ctx.dataset)
    mine = store.reviewer_label_count(ctx.reviewer.name, dataset=ctx.dataset) if ctx.reviewer.name else 0
    wanted = ctx.settings.wanted
    remaining = total - reviewed if wanted == 1 else store.clusters_needing(wanted, dataset=ctx.dataset)
    line = f"Mine {mine:,} / {total:,} · Reviewed {reviewed:,} / {total:,}"
    if ctx.reviewer.name:
        today, first = store.reviewer_decisions_since(ctx.reviewer.name, today_start())
        line += " · " + pace(today, first, remaining).line()
    st.text(line)


def card(view: ClusterView, shown: Card, ctx: AppContext, facts: list[str]) -> None:
    """One cluster on one screen: id and facts beside the proposals, the keys, all 10 samples.

    `facts` is the line under the id: callers (a dataset picker, CLIP statistics) add to it.
    """
    top_left, top_right = st.columns([2, 5], gap="small")
    with top_left:
        header(view, facts, shown.serial)
    with top_right:
        proposals(view, ctx.blind, shown.serial)
    action_bar(view, shown, ctx)
    samples(view)
    with st.container(key=f"cqc_end_{shown.serial}"):  # the card is complete once this is on screen
        # Last, so the browser has the whole card before it sends this card's token with a press.
        st.session_state[TOKEN_KEY] = shown.token
        st.text_input("Card token", key=TOKEN_KEY, label_visibility="collapsed")


def facts_line(view: ClusterView) -> list[str]:
    """The facts shown under the cluster id (a list, so other features can append theirs)."""
    info = view.info
    size = "unknown" if view.cluster.size is None else f"{view.cluster.size:,}"
    facts = [f"size {size}", f"reviews {info.get('n_reviews', 0)}"]
    if view.cluster.dataset:
        facts.append(f"dataset {view.cluster.dataset}")
    if info.get("source"):
        facts.append(f"from {Path(str(info['source'])).name}")
    return facts


def header(view: ClusterView, facts: list[str], serial: str) -> None:
    # Every part of the card carries the card's serial in its key: the page script hides any
    # part whose serial is not the header's, so a card that is still streaming in never shows
    # the previous cluster's samples or proposals under the new id.
    with st.container(key=f"cqc_head_{serial}"):
        st.code(view.cluster.id, language=None)
        st.text(" · ".join(facts))
        if view.my_verdict is not None:
            st.text(f"You decided: {view.my_verdict.value}")


def action_bar(view: ClusterView, shown: Card, ctx: AppContext) -> None:
    """The action buttons (each with its key, Accept coloured by the verdict it records) and the note."""
    actions = view.actions(ctx.blind)
    disabled = ctx.reviewer.name is None
    with st.container(key="cqc_actions", horizontal=True, gap="small", vertical_alignment="bottom"):
        for action in actions:
            verdict = _records(action, shown)
            tone = {"Acceptable": "green", "Unacceptable": "red"}.get(verdict or "", "plain")
            st.button(
                    _action_label(action, shown),
                    key=button_key(action, tone),
                    shortcut=ACTION_KEYS[action],
                    on_click=_press,
                    args=(action,),
                    disabled=disabled,
                    type="primary" if action == "accept" else "secondary",
                )
        st.text_input("Note", key=NOTE_KEY, placeholder="note · Esc leaves · ? keys",
                      disabled=disabled, label_visibility="collapsed", width=230)


def _records(action: str, shown: Card) -> str | None:
    """The verdict a button records, as its label says."""
    if action == "accept":
        return shown.verdict.value if shown.verdict else None
    if action == "override":
        return shown.verdict.other.value if shown.verdict else None
    return {"acceptable": "Acceptable", "unacceptable": "Unacceptable"}.get(action)


def _action_label(action: str, shown: Card) -> str:
    """Accept and Override name the verdict they record, so a keystroke is never a guess."""
    if action in ("accept", "override") and shown.verdict is not None:
        return f"{ACTION_LABELS[action]}: {_records(action, shown)}"
    return ACTION_LABELS[action]


def samples(view: ClusterView) -> None:
    """The 5 closest and 5 furthest samples side by side (numbered 1-10, as the hints refer to them).

    One escaped HTML element for all ten (card_html.py says why); with thumbnails on, a grid of
    5 per row, closest above, furthest below, each caption under its image.
    """
    thumbs = bool(view.has_urls and st.session_state.get(THUMBS_KEY))
    closest, furthest = view.cluster.closest, view.cluster.furthest
    halves = (("Closest to the centre", closest, 0), ("Furthest from the centre", furthest, len(closest)))
    with st.container(key="cqc_samples"):
        if not thumbs:
            st.html(card_html.samples_html(halves, view.hints, CAPTION_CHARS))
            return
        for title, items, start in halves:
            st.text(title)
            for column, (offset, sample) in zip(st.columns(5, gap="small"), enumerate(items)):
                with column:
                    _thumbnail(sample.url)
                    n = start + offset
                    st.html(card_html.sample_html(n + 1, sample, view.hints[n] if n < len(view.hints) else (),
                                                  CAPTION_CHARS))


def _thumbnail(url: str | None) -> None:
    """A thumbnail from a URL or a local image file; a visible line when it cannot be loaded.

    A local file is opened here, so a missing or broken one says so; a web image that fails
    in the browser is replaced by the same line by the page script (keys.py).
    """
    if not url:
        st.text("(no image)")
        return
    if url.startswith(("http://", "https://")):
        st.image(url, width="stretch")
        return
    try:
        from PIL import Image

        with Image.open(url) as img:
            img.verify()
        st.image(url, width="stretch")
    except Exception as exc:  # noqa: BLE001 - a broken image must not break the page
        st.text(f"image could not be loaded ({one_line(exc)})")


def proposals(view: ClusterView, blind: bool, serial: str = "0") -> None:
    """Every proposal in a few lines (one escaped HTML element); the one the keys answer is marked."""
    if not view.proposals:
        st.info("No proposal for this cluster yet: decide with 1 (Acceptable) or 2 (Unacceptable).")
        return
    if not view.proposals_visible(blind):
        st.info(f"Blind mode: {len(view.proposals)} proposal(s) hidden until you decide.", icon=":material/visibility_off:")
        return
    with st.container(key=f"cqc_proposals_{serial}", gap="small"):
        st.html(card_html.proposals_html(view.proposals, view.primary.id if view.primary else None))
        for proposal in view.proposals:
            if proposal.verdict is None:
                with st.expander(f"Raw answer of {proposal.judge}"):
                    st.code(proposal.raw or "(empty answer)", language=None, wrap_lines=True)


# --------------------------------------------------------------------------- below the card


def below_card(store: Store, view: ClusterView, reviewer: str | None) -> None:
    """What the curator does not read per cluster: guideline, thumbnails switch, full captions,
    history, the few-shot control (below the fold, behind expanders).

    The expanders track their state and draw their content only while open: a key press then
    redraws a few closed headers, not every history line and caption a second time.
    """
    guide = st.expander("Guideline", key="cqc_x_guideline", on_change="rerun", icon=":material/menu_book:")
    if guide.open:
        with guide:
            guideline(store)
    if view.has_urls:
        st.toggle("Show thumbnails (5 per row)", key=THUMBS_KEY)
    full = st.expander("All captions in full", key="cqc_x_captions", on_change="rerun")
    if full.open:
        with full:
            for n, sample in enumerate(view.cluster.samples):
                st.text(f"{n + 1}. {sample.text}")
    past = st.expander("Decision history", key="cqc_x_history", on_change="rerun")
    if past.open:
        with past:
            history(view)
    fewshot_mark(store, view, reviewer)


def guideline(store: Store) -> None:
    text = fewshot.current_guideline_text(store)
    if text:
        st.text(text)
    else:
        st.markdown("No guideline has been set yet; the Few-shot page sets one.")


def fewshot_mark(store: Store, view: ClusterView, reviewer: str | None) -> None:
    from clusterqc.ui import fewshot as fewshot_ui

    fewshot_ui.mark_control(store, view.cluster.id, reviewer)


def history(view: ClusterView) -> None:
    """Newest first, one line each, times as people read them."""
    if not view.history:
        st.text("No decisions yet.")
        return
    for d in reversed(view.history):
        verdict = d.verdict.value if d.verdict else "no verdict"
        what = "undid a decision, now " + verdict if d.action == "undo" else verdict
        agrees = {None: "", True: " · agrees with the model", False: " · differs from the model"}[d.agrees]
        line = f"{human_time(d.created_at)} · {d.reviewer} · {what}{agrees}"
        st.text(line + (f" · note: {d.note}" if d.note else ""))


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
    state.last, state.done = f"{added} offline proposals added.", False


def queue_empty(session: ReviewSession, ctx: AppContext) -> None:
    skipped = len(session.skipped())
    if skipped:
        st.success(f"Nothing left in this queue except the {skipped} cluster(s) you skipped.",
                   icon=":material/task_alt:")
        st.button(f"Revisit the {skipped} cluster(s) you skipped", key="cqc_revisit",
                  on_click=_revisit, shortcut="S", type="primary")
    elif ctx.settings.filter == "unreviewed" and not ctx.settings.search:
        st.success("Everything is reviewed: no cluster needs a review from you.", icon=":material/task_alt:")
    else:
        st.success("Nothing left in this queue for these filters.", icon=":material/task_alt:")
    try:
        st.page_link(EXPORT_PAGE, label="Export the labels", icon=":material/download:")
    except Exception:  # noqa: BLE001 - the page is registered only when app.py runs
        st.markdown("Export the labels from the Export page.")


def _revisit() -> None:
    session = ReviewSession(get_store(), session_state())
    count = session.revisit_skipped()
    session.state.last = f"{count} skipped cluster(s) are back in your queue."
