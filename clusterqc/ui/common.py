"""What every page shares: the store for this session, the sidebar, DB errors as one line.

Why a store per session (kept in `st.session_state`) and not one `st.cache_resource` store:
Streamlit runs each browser session's script on its own thread, and sessions run at the same
time. A sqlite3 connection must not be used by two threads at once, while one session's
reruns never overlap, so a connection per session is safe without locks, and SQLite's WAL
mode plus the store's busy timeout let those connections write side by side.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from clusterqc import bootstrap
from clusterqc.review import FILTER_LABELS, MAX_WANTED, SORT_LABELS, QueueSettings, Reviewer, resolve_reviewer
from clusterqc.store import Store, resolve_db_path
from clusterqc.store.connection import UnusableDatabase
from clusterqc.ui import evidence as evidence_ui

_LOG = logging.getLogger("clusterqc.ui")
STORES_KEY = "_cqc_stores"
CONTEXT_KEY = "_cqc_context"
BOOTSTRAP_PROBLEM_KEY = "_cqc_bootstrap_problem"
WANTED_SETTING = "reviews_wanted"
COUNTS_TTL_S = 5

# Widget keys (named so tests and pages can read them).
K_REVIEWER = "cqc_reviewer"
K_WANTED = "cqc_wanted"
K_BLIND = "cqc_blind"
K_FILTER = "cqc_filter"
K_SORT = "cqc_sort"
K_SEARCH = "cqc_search"
K_JUMP = "cqc_jump"
K_JUMP_PENDING = "cqc_jump_pending"
K_DATASET = "cqc_dataset"


class DBUnavailable(RuntimeError):
    """The database could not be opened (shown as one line; the page stops there)."""


@dataclass(frozen=True)
class AppContext:
    """What the sidebar decided this run: pages read it instead of re-reading widgets."""

    db_path: Path
    reviewer: Reviewer
    settings: QueueSettings
    blind: bool
    reviewed: int
    mine: int
    total: int
    progress_slot: Any = None  # the sidebar's progress bars, refreshed after a decision
    dataset: str | None = None  # the picker's choice (None: the database holds no dataset yet)


def _show_progress(slot: Any, store: Store, reviewer: str | None, dataset: str | None) -> tuple[int, int, int]:
    """Draw the two progress bars into `slot`: reviewed by anyone / all, mine / all (of the dataset)."""
    reviewed, total = cluster_counts(store, dataset)
    mine = store.reviewer_label_count(reviewer, dataset=dataset) if reviewer else 0
    denominator = max(total, 1)
    with slot.container():
        st.progress(min(reviewed / denominator, 1.0), text=f"Reviewed {reviewed} / {total}")
        st.progress(min(mine / denominator, 1.0), text=f"Mine {mine} / {total}")
    return reviewed, mine, total


def refresh_progress(ctx: AppContext, store: Store) -> None:
    """Redraw the sidebar's bars after this run's decision (the sidebar ran before it)."""
    if ctx.progress_slot is not None:
        _show_progress(ctx.progress_slot, store, ctx.reviewer.name, ctx.dataset)


def one_line(exc: BaseException) -> str:
    """An exception as the single line a user sees (never a traceback)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no details'}"


@contextmanager
def db_errors(what: str = "Database error") -> Iterator[None]:
    """Show SQLite and file errors as a one-line st.error instead of Streamlit's error page."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        st.error(f"{what}: {one_line(exc)}", icon=":material/error:")


@contextmanager
def page_errors() -> Iterator[None]:
    """Like `db_errors`, and any other failure too: one st.error line, the traceback to the log.

    Why: a reviewer mid-queue should see a line and keep their place, never Streamlit's error
    page; the operator still gets the full traceback in the server's log.
    """
    try:
        with db_errors():
            yield
    except Exception as exc:  # noqa: BLE001 - Streamlit's stop/rerun are BaseExceptions and pass
        _LOG.exception("clusterqc page failed")
        st.error(f"Something went wrong ({one_line(exc)}); the details are in the server log.",
                 icon=":material/error:")


def get_store() -> Store:
    """This session's store for the configured DB path, opened (and bootstrapped) once.

    Raises DBUnavailable with a one-line reason when the file cannot be opened as a database.
    """
    path = resolve_db_path()
    key = str(path.resolve())
    stores: dict[str, Store] = st.session_state.setdefault(STORES_KEY, {})
    if key not in stores:
        try:
            store = Store(path)
            started = bootstrap.ensure_started(store)
        except UnusableDatabase as exc:  # already one line naming the file (foreign, newer, not SQLite)
            raise DBUnavailable(f"cannot open {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise DBUnavailable(f"cannot open {path}: {one_line(exc)}") from exc
        stores[key] = store
        if started.did_something:
            forget_counts()
        if started.problem:
            st.session_state[BOOTSTRAP_PROBLEM_KEY] = started.problem
    return stores[key]


def store_or_stop() -> Store:
    """`get_store`, or a one-line error and the end of this run."""
    try:
        return get_store()
    except DBUnavailable as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
        raise  # pragma: no cover - st.stop() raises


# --------------------------------------------------------------------------- reviewers


def _secrets_section(name: str) -> Mapping[str, Any]:
    """A secrets.toml section, or {} when there is no secrets file or no such section."""
    try:
        section = st.secrets.get(name)
    except Exception:  # noqa: BLE001 - Streamlit raises its own error type when no file exists
        return {}
    return section if isinstance(section, Mapping) else {}


def login_configured() -> bool:
    """st.login needs an [auth] section in secrets; without one the sidebar field names reviewers."""
    return bool(_secrets_section("auth"))


def allowed_reviewers() -> list[str] | None:
    """Optional allow-list: `[clusterqc] reviewers = ["a@x.org", ...]` in secrets.toml."""
    listed = _secrets_section("clusterqc").get("reviewers")
    return [str(x) for x in listed] if isinstance(listed, (list, tuple)) and listed else None


def _user_dict() -> dict[str, Any]:
    try:
        return dict(st.user.to_dict())
    except Exception:  # noqa: BLE001 - no user info outside a session
        return {}


def _reviewer_widgets(login: bool) -> Reviewer:
    if login:
        reviewer = resolve_reviewer(login_configured=True, user=_user_dict(), allowed=allowed_reviewers())
        if reviewer.name:
            st.text(f"Reviewer: {reviewer.name}")
            st.button("Log out", on_click=st.logout, key="cqc_logout")
        elif not _user_dict().get("is_logged_in"):
            st.button("Log in", on_click=st.login, key="cqc_login", type="primary")
        return reviewer
    url_value = st.query_params.get("reviewer", "")
    if K_REVIEWER not in st.session_state:
        st.session_state[K_REVIEWER] = url_value
    field = st.text_input("Reviewer", key=K_REVIEWER, placeholder="your name", max_chars=64)
    reviewer = resolve_reviewer(login_configured=False, user={}, allowed=None, field_value=field, url_value="")
    if reviewer.name and reviewer.name != url_value:
        st.query_params["reviewer"] = reviewer.name  # so a reload or a bookmark keeps the name
    return reviewer


# --------------------------------------------------------------------------- sidebar


def _save_wanted(store: Store) -> None:
    store.set_setting(WANTED_SETTING, str(st.session_state[K_WANTED]))


def _request_jump() -> None:
    """Callback: remember the id typed into the jump field and clear the field for the next one."""
    st.session_state[K_JUMP_PENDING] = st.session_state.get(K_JUMP, "")
    st.session_state[K_JUMP] = ""


def stored_wanted(store: Store) -> int:
    """Reviews wanted per cluster: a project setting shared by every reviewer (1..3)."""
    try:
        value = int(store.get_setting(WANTED_SETTING, "1") or 1)
    except ValueError:
        value = 1
    return min(max(value, 1), MAX_WANTED)


@st.cache_data(ttl=COUNTS_TTL_S, show_spinner=False, max_entries=64)
def _cached_counts(db_key: str, dataset: str | None, _store: Store) -> tuple[int, int]:
    reviewed, _, total = _store.progress(None, dataset=dataset)
    return reviewed, total


def cluster_counts(store: Store, dataset: str | None = None) -> tuple[int, int]:
    """(clusters reviewed by anyone, all clusters) of `dataset` (None: all), refreshed every few seconds.

    Why cached: counting 100,000 rows costs milliseconds on every keystroke-driven rerun, and
    the bar does not need to be exact to the second. `forget_counts` after an import.
    """
    return _cached_counts(str(store.path.resolve()), dataset, store)


def forget_counts() -> None:
    """Drop the cached counts (after importing clusters, so the page sees them at once)."""
    _cached_counts.clear()


def _follow_dataset_link() -> None:
    """Callback of the picker: the URL names the chosen dataset, so a link opens the same one."""
    st.query_params["dataset"] = st.session_state[K_DATASET]
    st.query_params.pop("cluster", None)  # a cluster id means nothing in another dataset


def dataset_picker(store: Store) -> str | None:
    """The dataset every page works on: `?dataset=NAME` when it names one, else the first.

    An unknown name in the URL falls back to the first dataset with a one-line warning.
    """
    names = store.dataset_names()
    if not names:
        return None
    wanted = st.query_params.get("dataset")
    if st.session_state.get(K_DATASET) not in names or (wanted in names and wanted != st.session_state[K_DATASET]):
        st.session_state[K_DATASET] = wanted if wanted in names else names[0]
    if wanted is not None and wanted not in names:
        st.warning(f"No dataset named {wanted!r}; showing {st.session_state[K_DATASET]}.", icon=":material/warning:")
    chosen = st.selectbox("Dataset", names, key=K_DATASET, on_change=_follow_dataset_link)
    if st.query_params.get("dataset") != chosen and len(names) > 1:
        st.query_params["dataset"] = chosen
    return chosen


def chosen_dataset() -> str | None:
    """The picker's dataset for this run (for helpers that get no AppContext)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx.dataset if ctx is not None else st.session_state.get(K_DATASET)


def show_dataset(ctx: AppContext) -> None:
    """The line each page shows under its title: which dataset it is about."""
    if ctx.dataset is not None:
        st.caption(f"Dataset: {ctx.dataset}")


QUEUE_WIDGETS = (K_BLIND, K_FILTER, K_SORT, K_SEARCH)


def render_sidebar(store: Store, queue_controls: bool = True) -> AppContext:
    """The shared sidebar; also leaves an AppContext for the pages of this run.

    The queue controls (blind mode, queue, sort, search, jump) only show on the pages they
    act on (`queue_controls`); elsewhere their last values are kept for when they come back.
    Those pages draw their own progress line (a key press reruns only their card), so the
    sidebar's progress bars are left to the other pages.
    """
    with st.sidebar:
        dataset = dataset_picker(store)
        st.text(f"Database: {store.path}")
        reviewer = _reviewer_widgets(login_configured())
        if reviewer.problem:
            st.warning(reviewer.problem, icon=":material/person:")
        st.session_state[K_WANTED] = stored_wanted(store)  # follow colleagues' changes
        st.select_slider(
            "Reviews wanted per cluster", options=list(range(1, MAX_WANTED + 1)), key=K_WANTED,
            on_change=_save_wanted, args=(store,),
        )
        if queue_controls:
            blind = st.toggle("Blind mode", key=K_BLIND, help="Hide proposals until you have decided the cluster.")
            flt = st.selectbox("Queue", list(FILTER_LABELS), format_func=FILTER_LABELS.__getitem__, key=K_FILTER)
            sort = st.selectbox("Sort", list(SORT_LABELS), format_func=SORT_LABELS.__getitem__, key=K_SORT)
            search = st.text_input("Search samples", key=K_SEARCH, placeholder="text in any caption")
            st.text_input("Jump to cluster id", key=K_JUMP, on_change=_request_jump, placeholder="e.g. Cluster_12")
        else:
            for key in QUEUE_WIDGETS:  # keep the values while the widgets are not drawn
                if key in st.session_state:
                    st.session_state[key] = st.session_state[key]
            blind, flt = st.session_state.get(K_BLIND, False), st.session_state.get(K_FILTER)
            sort, search = st.session_state.get(K_SORT), st.session_state.get(K_SEARCH, "")
        slot = st.empty()
        if queue_controls:  # the review pages show progress at the top, redrawn with each key
            slot = None
            (reviewed, total), mine = cluster_counts(store, dataset), 0
        else:
            reviewed, mine, total = _show_progress(slot, store, reviewer.name, dataset)
        if dataset is not None:
            evidence_ui.sidebar(store, dataset)
    settings = QueueSettings(filter=flt or "unreviewed", sort=sort or "id", wanted=stored_wanted(store),
                             search=(search or "").strip(), dataset=dataset)
    ctx = AppContext(store.path, reviewer, settings, bool(blind), reviewed, mine, total, slot, dataset)
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def page_context(store: Store) -> AppContext:
    """The sidebar's context for this run.

    app.py renders the sidebar before every page (st.navigation runs it first on each rerun),
    so the context is fresh; a page script run on its own (a test) renders the sidebar itself.
    """
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx if ctx is not None else render_sidebar(store)
