"""The review loop without a screen: who is reviewing, which cluster comes next, what a key does.

The Streamlit page only renders a `ClusterView` and forwards key presses to a `ReviewSession`;
everything that decides what gets written (which proposal an Accept answers, what Override
means, what Undo shows next, how Skip and the browse filters avoid showing a cluster twice)
lives here, so the AppTest, the browser test and the CLI-style unit tests exercise one
implementation. No Streamlit import here on purpose (see DESIGN.md: pages render, clusterqc
decides).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
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
    "learned_vs_llm": "Learned judge and LLM disagree",
}
SORT_LABELS: dict[str, str] = {
    "id": "Cluster id",
    "size": "Size (largest first)",
    "uncertainty": "Model uncertainty",
    "least_certain": "Least certain first (learned judge)",
}
# Filters whose clusters stay in the filter after a decision: the session walks past what it
# has shown instead of being handed the same cluster again.
BROWSE_FILTERS = frozenset({"disagreements", "mine", "all"})
MAX_WANTED = 3
MAX_NAME_CHARS = 64
OFFLINE_JUDGE = "offline"
LEARNED_JUDGE = "learned"

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
    """The proposal Accept and Override answer: the newest parsed one, an LLM's before the
    learned judge's before offline's.

    The offline judge is a heuristic baseline; when a model has answered, that is what the
    curator is checking. The learned judge ranks between the two: it is trained on the
    curators, but an LLM's answer (when there is one) is the one a curator came to check.
    """
    parsed = [p for p in proposals if p.parsed]
    rank = {OFFLINE_JUDGE: 0, LEARNED_JUDGE: 1}
    best = max((rank.get(p.judge, 2) for p in parsed), default=None)
    pool = [p for p in parsed if rank.get(p.judge, 2) == best]
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
        """The action keys offered: Accept/Override when a visible parsed proposal exists.

        1 and 2 (Acceptable / Unacceptable whatever the proposal says) are always offered, so
        a curator who thinks in verdicts rather than in agreement never presses a dead key.
        """
        answer = ("accept", "override") if self.primary and self.proposals_visible(blind) else ()
        return answer + ("acceptable", "unacceptable", "skip", "undo")


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


@dataclass(frozen=True)
class Card:
    """One rendered cluster card: what its keys answer, and the token a key press must carry.

    A key press is applied only when its token is the token of the card on screen, and at
    most once (the token is spent by the first press). So a second press that arrives before
    the next card is shown, or a press on a card rendered before a newer proposal arrived,
    can never decide a cluster the reviewer did not see or record a verdict the button did
    not show: Accept records `verdict` and `proposal_id`, as they were rendered.
    """

    token: str
    cluster_id: str
    content_hash: str
    proposal_id: int | None  # the proposal the decision is recorded against (also when blind)
    verdict: Verdict | None  # what Accept records; None when no visible parsed proposal

    @property
    def serial(self) -> str:
        """The rendering number in the token: the page tags each part of the card with it."""
        return self.token.split("-", 1)[0]

    def matches(self, view: "ClusterView", blind: bool) -> bool:
        """Whether this card still shows `view` exactly (same content, proposal and verdict)."""
        verdict = view.primary.verdict if view.primary and view.proposals_visible(blind) else None
        proposal_id = view.primary.id if view.primary else None
        return (self.cluster_id, self.content_hash, self.proposal_id, self.verdict) == (
            view.cluster.id, view.cluster.content_hash(), proposal_id, verdict)


@dataclass
class SessionState:
    """Plain data kept between reruns (in st.session_state by the app)."""

    reviewer: str | None = None
    settings: QueueSettings = field(default_factory=QueueSettings)
    current: str | None = None
    pinned: bool = False  # current came from a jump, a link or an undo, not from the queue
    seen: list[str] = field(default_factory=list)
    done: bool = False  # the queue had nothing left at the last look
    last: str = ""  # one line about the last action, shown above the next cluster
    card: Card | None = None  # the card on screen; None once a key press has spent it
    serial: int = 0  # how many cards this session has rendered (part of every token)
    ignored: str = ""  # one line when a key press was dropped (shown once)
    applied: bool = False  # a key press was applied since the last render

    def restart_pass(self) -> None:
        """Forget what this pass walked past, so the queue offers it again."""
        self.seen, self.done, self.current, self.pinned, self.card = [], False, None, False, None


ACTION_KEYS: dict[str, str] = {
    "accept": "A",
    "override": "O",
    "skip": "S",
    "undo": "U",
    "acceptable": "1",
    "unacceptable": "2",
}
IGNORED_STALE = "Ignored: pressed before the next cluster appeared."


class ReviewSession:
    """One reviewer's pass through the queue: a small state machine over `SessionState`.

    current -> (decide | skip) -> next from the queue; undo -> the undone cluster, pinned;
    jump -> the named cluster, pinned. The store's hold is taken whenever a cluster becomes
    current, so colleagues are handed other clusters meanwhile. Skips are stored per
    reviewer (a new tab or a restart keeps them) until the reviewer revisits them.
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
        exclude = state.seen if s.filter in BROWSE_FILTERS else []
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

    def skipped(self) -> list[str]:
        """This reviewer's stored skips (clusters skipped and not decided since)."""
        ds = self.state.settings.dataset
        return self.store.skipped_clusters(self.state.reviewer, dataset=ds) if self.state.reviewer else []

    def revisit_skipped(self) -> int:
        """Put the reviewer's skipped clusters back into their queues; returns how many."""
        count = self.store.unskip(self.state.reviewer, dataset=self.state.settings.dataset) if self.state.reviewer else 0
        self.state.restart_pass()
        return count

    # -- the card on screen

    def show(self, view: ClusterView, blind: bool) -> Card:
        """The card for `view`: the one already on screen if it still shows exactly this, else a new one.

        A new card (new cluster, new content, another proposal, blind mode lifted) gets a new
        token, so key presses aimed at the previous rendering cannot apply to it.
        """
        card = self.state.card
        if card is not None and card.matches(view, blind):
            return card
        self.state.serial += 1
        shown = view.primary.verdict if view.primary and view.proposals_visible(blind) else None
        digest = hashlib.sha1(f"{view.cluster.id}\x00{view.primary.id if view.primary else ''}".encode()).hexdigest()
        self.state.card = Card(
            token=f"{self.state.serial}-{digest[:10]}",
            cluster_id=view.cluster.id,
            content_hash=view.cluster.content_hash(),
            proposal_id=view.primary.id if view.primary else None,
            verdict=shown,
        )
        return self.state.card

    def press(self, action: str, token: str, note: str = "") -> Decision | None:
        """Apply a key press made on the card with `token`: at most once, as that card showed it.

        A press whose token is not the current card's (already spent, or from an earlier
        rendering) is dropped and noted in `state.ignored`; nothing is written.
        """
        if action not in ACTION_KEYS:
            raise ValueError(f"unknown action {action!r}")
        card = self.state.card
        if card is None or token != card.token:
            # Streamlit may hand over an earlier card's press in the same run as this one's;
            # the line only shows when nothing else happened.
            if not self.state.applied:
                self.state.ignored = IGNORED_STALE
            return None
        self._require_reviewer()
        self.state.card = None  # spent before anything is written: a second press is stale
        self.state.applied, self.state.ignored = True, ""
        if action == "undo":
            return self.undo()
        if action == "skip":
            self.skip(card.cluster_id)
            return None
        verdict = self._card_verdict(action, card)
        return self._record(card.cluster_id, verdict, card.proposal_id, note)

    @staticmethod
    def _card_verdict(action: str, card: Card) -> Verdict:
        if action in ("acceptable", "unacceptable"):
            return Verdict.ACCEPTABLE if action == "acceptable" else Verdict.UNACCEPTABLE
        if card.verdict is None:
            raise ValueError(f"cluster {card.cluster_id} shows no proposal to {action}")
        return card.verdict if action == "accept" else card.verdict.other

    # -- actions

    def act(self, action: str, cluster_id: str, note: str = "") -> Decision | None:
        """Apply one action to a cluster as it is in the store now (scripts and tests; the page
        uses `press`, which answers what was on screen)."""
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
        return self._record(view.cluster.id, verdict, view.primary.id if view.primary else None, note)

    def _record(self, cluster_id: str, verdict: Verdict, proposal_id: int | None, note: str) -> Decision:
        reviewer = self._require_reviewer()
        decision = self.store.decide(
            cluster_id, reviewer, verdict, proposal_id=proposal_id, note=note.strip(), dataset=self.state.settings.dataset
        )
        proposal = self.store.get_proposal(proposal_id) if proposal_id is not None else None
        self.state.last = _describe(decision, proposal)
        self._move_on(cluster_id)
        return decision

    def skip(self, cluster_id: str) -> None:
        reviewer = self._require_reviewer()
        self.store.skip_cluster(reviewer, cluster_id, dataset=self.state.settings.dataset)
        self.state.last = f"Skipped {cluster_id}."
        self._move_on(cluster_id)

    def undo(self) -> Decision | None:
        """Append a reverting row for my latest decision and show that cluster again."""
        reviewer = self._require_reviewer()
        undone = self.store.undo_last(reviewer, dataset=self.state.settings.dataset)
        if undone is None:
            self.state.last = "Nothing to undo: you have no decision left to revert."
            return None
        now = undone.verdict.value if undone.verdict else "undecided"
        self.state.last = f"Undid your decision on {undone.cluster_id}; it is {now} for you again."
        self._pin(undone.cluster_id)
        return undone

    def _move_on(self, cluster_id: str) -> None:
        if self.state.current == cluster_id:
            self.state.current, self.state.pinned = None, False
        self.state.card = None
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



# --------------------------------------------------------------------------- progress and time


def human_time(iso: str | None, now: datetime | None = None) -> str:
    """A stored ISO timestamp as a curator reads it: "today 14:05", "yesterday 09:12", a date.

    Times are shown in UTC (said so), to the minute: the microseconds are for ordering only.
    """
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    days = (now.date() - when.date()).days
    clock = when.strftime("%H:%M")
    if days == 0:
        return f"today {clock} UTC"
    if days == 1:
        return f"yesterday {clock} UTC"
    return when.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Pace:
    """Today's work for the progress line: decisions since midnight UTC, rate, time left."""

    today: int
    per_hour: float | None  # None until there are enough decisions to say
    remaining: int
    eta_minutes: float | None

    def line(self) -> str:
        left = f"{self.remaining:,} cluster(s) still need a review"
        if self.per_hour is None:
            return f"Today: {self.today} decided · {left} · pace shows after a few decisions"
        eta = "" if self.eta_minutes is None else f" · about {_duration(self.eta_minutes)} left at this pace"
        return f"Today: {self.today} decided · {self.per_hour:.0f}/h · {left}{eta}"


MIN_FOR_PACE = 3


def pace(today: int, first_today: str | None, remaining: int, now: datetime | None = None) -> Pace:
    """Rate over the time since today's first decision (at least one minute, so the first few
    decisions do not claim thousands per hour); time left = remaining / rate."""
    now = now or datetime.now(timezone.utc)
    if today < MIN_FOR_PACE or not first_today:
        return Pace(today, None, remaining, None)
    start = datetime.fromisoformat(first_today)
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    hours = max((now - start).total_seconds(), 60.0) / 3600
    rate = today / hours
    return Pace(today, rate, remaining, remaining / rate * 60 if rate > 0 else None)


def today_start(now: datetime | None = None) -> str:
    """Midnight UTC of today, as stored timestamps spell it (they compare as text)."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0).isoformat(timespec="microseconds")


def _duration(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
