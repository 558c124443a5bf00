"""The review loop without a screen: who is reviewing, which cluster comes next, what a key does.

The Streamlit page only renders a `ClusterView` and forwards key presses to a `ReviewSession`;
everything that decides what gets written (which proposal an Accept answers, what Override
means, what Undo shows next, how Skip and the browse filters avoid showing a cluster twice)
lives here, so the AppTest, the browser test and the CLI-style unit tests exercise one
implementation. No Streamlit import here on purpose (see DESIGN.md: pages render, clusterqc
decides).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from clusterqc.model import Cluster, Decision, Proposal, Verdict
from clusterqc.store import QUEUE_FILTERS, QUEUE_SORTS, Store

# What the sidebar calls each queue filter and sort; keys are the store's names.
FILTER_LABELS: dict[str, str] = {
    "unreviewed": "Unreviewed (needs me)",
    "disagreements": "Disagreements (reviewer vs model)",
    "model_acceptable": "Model says Acceptable",
    "model_unacceptable": "Model says Unacceptable",
    "unparsed": "Unparsed proposals",
    "mine": "Reviewed by me",
    "all": "All clusters",
    "recheck": "Second look (guidelines changed)",
}
SORT_LABELS: dict[str, str] = {
    "id": "Cluster id",
    "size": "Size (largest first)",
    "uncertainty": "Model uncertainty",
}
# Filters whose clusters stay in the filter after a decision: the session walks past what it
# has shown instead of being handed the same cluster again.
BROWSE_FILTERS = frozenset({"disagreements", "mine", "all"})
MAX_WANTED = 3
MAX_NAME_CHARS = 64
OFFLINE_JUDGE = "offline"

assert set(FILTER_LABELS) == set(QUEUE_FILTERS), "every store filter needs a label"
assert set(SORT_LABELS) == set(QUEUE_SORTS), "every store sort needs a label"


# --------------------------------------------------------------------------- reviewers


@dataclass(frozen=True)
class Reviewer:
    """Who is reviewing (None: nobody yet) and, when nobody, the one line that says why."""

    name: str | None
    source: str  # "login", "field", "url" or "none"
    problem: str | None = None


def clean_name(value: object) -> str:
    """A reviewer name as stored: printable, single-spaced, at most 64 characters."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")
    return re.sub(r"\s+", " ", text).strip()[:MAX_NAME_CHARS]


def resolve_reviewer(
    *,
    login_configured: bool,
    user: Mapping[str, Any],
    allowed: Sequence[str] | None,
    field_value: object = None,
    url_value: object = None,
) -> Reviewer:
    """Apply the naming rules: a configured login wins and cannot be overridden by a field.

    With login configured, the reviewer is the logged-in user's email (else name); when an
    allow-list is given, only listed emails/names may decide. Without login, the sidebar field
    wins over `?reviewer=` (the field starts out as the URL value). Nothing else names anyone.
    """
    if login_configured:
        if not user.get("is_logged_in"):
            return Reviewer(None, "none", "Log in to review (the app is configured for login).")
        name = clean_name(user.get("email") or user.get("name") or "")
        if not name:
            return Reviewer(None, "none", "Your login did not give an email or name to record.")
        if allowed and not _on_list(user, allowed):
            return Reviewer(None, "none", f"{name} is not on this project's reviewer list.")
        return Reviewer(name, "login")
    for source, value in (("field", field_value), ("url", url_value)):
        name = clean_name(value)
        if name:
            return Reviewer(name, source)
    return Reviewer(None, "none", "Enter your name in the sidebar (or open the app with ?reviewer=NAME) to review.")


def _on_list(user: Mapping[str, Any], allowed: Sequence[str]) -> bool:
    names = {str(a).strip().lower() for a in allowed}
    return any(str(user.get(k) or "").strip().lower() in names for k in ("email", "name"))


# --------------------------------------------------------------------------- what a screen shows


def primary_proposal(proposals: Sequence[Proposal]) -> Proposal | None:
    """The proposal Accept and Override answer: the newest parsed one, an LLM's before offline's.

    The offline judge is a heuristic baseline; when a model has answered, that is what the
    curator is checking.
    """
    parsed = [p for p in proposals if p.parsed]
    models = [p for p in parsed if p.judge != OFFLINE_JUDGE]
    pool = models or parsed
    return max(pool, key=lambda p: p.id or 0) if pool else None


def sample_hints(cluster: Cluster) -> list[list[str]]:
    """Per-sample hints from the offline judge's features, closest first; none if it is absent."""
    try:
        from clusterqc.judges import offline
    except ImportError:
        return [[] for _ in cluster.samples]
    hinter = getattr(offline, "sample_hints", None) or offline.OfflineJudge().sample_hints
    hints = list(hinter(cluster))
    hints += [[] for _ in range(len(cluster.samples) - len(hints))]
    return [list(h) for h in hints]


@dataclass(frozen=True)
class ClusterView:
    """Everything the Review page shows for one cluster, loaded in one place."""

    cluster: Cluster
    info: dict[str, Any]
    proposals: tuple[Proposal, ...]
    primary: Proposal | None
    history: tuple[Decision, ...]
    hints: tuple[tuple[str, ...], ...]
    my_verdict: Verdict | None

    @property
    def has_urls(self) -> bool:
        return any(s.url for s in self.cluster.samples)

    def proposals_visible(self, blind: bool) -> bool:
        """Blind mode hides the model until this reviewer has decided the cluster."""
        return not blind or self.my_verdict is not None

    def actions(self, blind: bool) -> tuple[str, ...]:
        """The action keys offered: Accept/Override when a visible parsed proposal exists."""
        verdict_keys = ("accept", "override") if self.primary and self.proposals_visible(blind) else (
            "acceptable",
            "unacceptable",
        )
        return verdict_keys + ("skip", "undo")


def load_view(
    store: Store, cluster_id: str, reviewer: str | None, dataset: str | None = None
) -> ClusterView | None:
    """The cluster `cluster_id` of `dataset` (None: the only one) as the Review page shows it."""
    cluster = store.get_cluster(cluster_id, dataset=dataset)
    if cluster is None:
        return None
    dataset = cluster.dataset
    proposals = tuple(store.proposals_for(cluster_id, dataset=dataset))
    # The history of this content only: decisions on what the cluster held before a replace
    # stay in the log but are not this screen's (they neither count nor show as "mine").
    info = store.cluster_info(cluster_id, dataset=dataset) or {}
    history = tuple(
        d for d in store.decisions(cluster_id=cluster_id, dataset=dataset)
        if d.content_hash is None or d.content_hash == info.get("content_hash")
    )
    mine = None
    if reviewer:
        for d in history:
            if d.reviewer == reviewer:
                mine = d.verdict
    return ClusterView(
        cluster=cluster,
        info=info,
        proposals=proposals,
        primary=primary_proposal(proposals),
        history=history,
        hints=tuple(tuple(h) for h in sample_hints(cluster)),
        my_verdict=mine,
    )


# --------------------------------------------------------------------------- the session


@dataclass(frozen=True)
class QueueSettings:
    """The sidebar's queue choices; a change starts a fresh pass through the queue.

    `dataset` is the picker's choice (None: the database's only dataset).
    """

    filter: str = "unreviewed"
    sort: str = "id"
    wanted: int = 1
    search: str = ""
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.filter not in QUEUE_FILTERS:
            raise ValueError(f"unknown filter {self.filter!r}")
        if self.sort not in QUEUE_SORTS:
            raise ValueError(f"unknown sort {self.sort!r}")
        if not 1 <= self.wanted <= MAX_WANTED:
            raise ValueError(f"reviews wanted must be 1 to {MAX_WANTED}, not {self.wanted}")


@dataclass
class SessionState:
    """Plain data kept between reruns (in st.session_state by the app)."""

    reviewer: str | None = None
    settings: QueueSettings = field(default_factory=QueueSettings)
    current: str | None = None
    pinned: bool = False  # current came from a jump, a link or an undo, not from the queue
    skipped: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    done: bool = False  # the queue had nothing left at the last look
    last: str = ""  # one line about the last action, shown above the next cluster

    def restart_pass(self) -> None:
        """Forget what this pass skipped and walked past, so the queue offers them again."""
        self.skipped, self.seen, self.done, self.current, self.pinned = [], [], False, None, False


ACTION_KEYS: dict[str, str] = {
    "accept": "A",
    "override": "O",
    "skip": "S",
    "undo": "U",
    "acceptable": "1",
    "unacceptable": "2",
}


class ReviewSession:
    """One reviewer's pass through the queue: a small state machine over `SessionState`.

    current -> (decide | skip) -> next from the queue; undo -> the undone cluster, pinned;
    jump -> the named cluster, pinned. The store's hold is taken whenever a cluster becomes
    current, so colleagues are handed other clusters meanwhile.
    """

    def __init__(self, store: Store, state: SessionState, hold_seconds: float | None = None):
        self.store = store
        self.state = state
        self._hold = {} if hold_seconds is None else {"hold_seconds": hold_seconds}

    # -- settings

    def configure(self, reviewer: str | None, settings: QueueSettings) -> None:
        """Start a fresh pass when the reviewer or the queue settings change."""
        if reviewer != self.state.reviewer or settings != self.state.settings:
            same_place = reviewer == self.state.reviewer and settings.dataset == self.state.settings.dataset
            keep = self.state.current if self.state.pinned and same_place else None
            self.state.reviewer, self.state.settings = reviewer, settings
            self.state.restart_pass()
            self.state.current, self.state.pinned = keep, keep is not None

    # -- where we are

    def current(self) -> str | None:
        """The cluster on screen, fetching the next one from the queue when there is none.

        An empty queue is asked again on every run: colleagues' holds expire and new clusters
        get imported while the "all done" screen is up.
        """
        if self.state.current is None:
            self.advance()
        return self.state.current

    def advance(self) -> str | None:
        """Take the next cluster from the queue (a read-only peek when nobody is reviewing)."""
        s, state = self.state.settings, self.state
        if not state.reviewer:
            state.current = self.store.peek_cluster(s.filter, s.sort, s.search, dataset=s.dataset)
            state.pinned = False
            return state.current
        exclude = state.skipped + (state.seen if s.filter in BROWSE_FILTERS else [])
        state.current = self.store.next_cluster(
            state.reviewer, s.filter, s.sort, s.wanted, s.search, exclude=exclude, dataset=s.dataset, **self._hold
        )
        state.pinned = False
        state.done = state.current is None
        if state.current is not None and s.filter in BROWSE_FILTERS:
            state.seen.append(state.current)
        return state.current

    def jump(self, cluster_id: str) -> bool:
        """Show a named cluster whatever the filter says (links, the jump field); False if unknown."""
        cluster_id = cluster_id.strip()
        if not cluster_id or self.store.cluster_info(cluster_id, dataset=self.state.settings.dataset) is None:
            return False
        self._pin(cluster_id)
        return True

    def _pin(self, cluster_id: str) -> None:
        self.state.current, self.state.pinned, self.state.done = cluster_id, True, False
        if self.state.reviewer:
            self.store.hold_cluster(cluster_id, self.state.reviewer, dataset=self.state.settings.dataset, **self._hold)

    # -- actions

    def act(self, action: str, cluster_id: str, note: str = "") -> Decision | None:
        """Apply one key press to the cluster it was pressed on; returns what was appended."""
        if action not in ACTION_KEYS:
            raise ValueError(f"unknown action {action!r}")
        if action == "undo":
            return self.undo()
        if action == "skip":
            self.skip(cluster_id)
            return None
        view = load_view(self.store, cluster_id, self.state.reviewer, dataset=self.state.settings.dataset)
        if view is None:
            raise ValueError(f"cluster {cluster_id} does not exist")
        return self.decide(view, self._verdict_for(action, view), note)

    @staticmethod
    def _verdict_for(action: str, view: ClusterView) -> Verdict:
        if action in ("acceptable", "unacceptable"):
            return Verdict.ACCEPTABLE if action == "acceptable" else Verdict.UNACCEPTABLE
        if view.primary is None or view.primary.verdict is None:
            raise ValueError(f"cluster {view.cluster.id} has no parsed proposal to {action}")
        return view.primary.verdict if action == "accept" else view.primary.verdict.other

    def decide(self, view: ClusterView, verdict: Verdict, note: str = "") -> Decision:
        """Record a verdict against the primary proposal (kept even when blind, for agreement)."""
        reviewer = self._require_reviewer()
        proposal_id = view.primary.id if view.primary else None
        decision = self.store.decide(view.cluster.id, reviewer, verdict, proposal_id=proposal_id, note=note.strip(),
                                     dataset=view.cluster.dataset)
        self.state.last = _describe(decision, view.primary)
        self._move_on(view.cluster.id)
        return decision

    def skip(self, cluster_id: str) -> None:
        self._require_reviewer()
        if cluster_id not in self.state.skipped:
            self.state.skipped.append(cluster_id)
        self.state.last = f"Skipped {cluster_id}."
        self._move_on(cluster_id)

    def undo(self) -> Decision | None:
        """Append a reverting row for my latest decision and show that cluster again."""
        reviewer = self._require_reviewer()
        undone = self.store.undo_last(reviewer, dataset=self.state.settings.dataset)
        if undone is None:
            self.state.last = "Nothing to undo: you have no decision left to revert."
            return None
        if undone.cluster_id in self.state.skipped:
            self.state.skipped.remove(undone.cluster_id)
        now = undone.verdict.value if undone.verdict else "undecided"
        self.state.last = f"Undid your decision on {undone.cluster_id}; it is {now} for you again."
        self._pin(undone.cluster_id)
        return undone

    def _move_on(self, cluster_id: str) -> None:
        if self.state.current == cluster_id:
            self.state.current, self.state.pinned = None, False
        self.state.done = False

    def _require_reviewer(self) -> str:
        if not self.state.reviewer:
            raise PermissionError("no reviewer: enter your name before deciding")
        return self.state.reviewer


def _describe(decision: Decision, primary: Proposal | None) -> str:
    verdict = decision.verdict.value if decision.verdict else "undecided"
    line = f"Saved {decision.cluster_id}: {verdict}"
    if primary is not None and primary.verdict is not None:
        relation = "agrees with" if primary.verdict == decision.verdict else "overrides"
        line += f" ({relation} {primary.judge}, which said {primary.verdict.value})"
    return line + "."


def settings_from(values: Mapping[str, Any], fallback: QueueSettings | None = None) -> QueueSettings:
    """Queue settings from loose widget values; anything invalid falls back to the default."""
    base = fallback or QueueSettings()
    try:
        return replace(
            base,
            filter=str(values.get("filter", base.filter)),
            sort=str(values.get("sort", base.sort)),
            wanted=int(values.get("wanted", base.wanted)),
            search=str(values.get("search", base.search) or ""),
        )
    except (TypeError, ValueError):
        return base

