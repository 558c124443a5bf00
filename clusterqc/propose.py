"""The batch runner: clusters without a proposal -> judge -> store, concurrent and resumable.

Design, and why:
- Work list: `store.pending_cluster_ids(judge, prompt version)`, so a re-run asks only about
  clusters that have no proposal yet (failures are asked again; finished ones never).
- Worker threads only call the judge (network-bound); the calling thread is the single writer
  and commits each result the moment it arrives. SQLite connections are per thread, so the
  caller's Store is never touched by a worker, and a kill loses only the requests in flight.
- At most `concurrency` clusters are in flight (a sliding window, not a queue of thousands), so
  cancelling is prompt and memory stays flat. The first request goes alone: if the key is
  wrong, exactly one request is spent, not `concurrency` of them.
- A fatal JudgeError (401/403/404) stops the batch; a cluster-level one is logged with
  `store.add_failure` and the batch goes on; too many transient ones in a row (endpoint down),
  or a few 200s in a row that are no chat completion (a proxy's page), stop it too. When the
  run stops for such a reason, answers already in flight are still stored.
- Clusters that failed transiently (429/5xx/timeouts after the client's retries) are asked
  once more at the end of the same run, after a pause, unless the run was stopped: a short
  storm at the start leaves no holes, and a dead endpoint is not hammered twice.
- Stop (the app) or Ctrl-C: no new requests; those in flight get DRAIN_GRACE seconds to
  finish and be stored, then the judge's `abort()` ends them (a second Ctrl-C at once), so a
  stop returns within seconds even from a server that drips its answer a byte at a time.
- The caller's progress callback is also called every HEARTBEAT seconds while nothing
  arrives, so a CLI can show it is alive while the first request is still out.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clusterqc.jobs import BackgroundJob
from clusterqc.judges.base import Judge, JudgeError
from clusterqc.model import Cluster, Proposal
from clusterqc.prompt import PromptTemplate, save_template
from clusterqc.settings import EndpointConfig, redact
from clusterqc.store import Store

DEFAULT_CONCURRENCY = 8
LOAD_CHUNK = 256
HEARTBEAT = 1.0  # seconds between progress calls while nothing arrives
DRAIN_GRACE = 2.0  # seconds requests in flight get to finish after Stop / Ctrl-C
ABORT_WAIT = 2.0  # seconds to wait for aborted requests to return before leaving them behind
MAX_BAD_ANSWERS = 3  # 200s in a row that are no chat completion: not an OpenAI-compatible server
END_RETRY_PAUSE = 2.0  # seconds before the end-of-run round for transient failures
JUDGES = ("offline", "llm")


@dataclass
class Progress:
    """The runner's running totals, passed to the progress callback after each result."""

    total: int
    done: int = 0
    proposed: int = 0
    unparsed: int = 0
    failed: int = 0
    already: int = 0  # answered meanwhile by another process: not stored twice
    retrying: int = 0  # transient failures being asked once more at the end of the run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_cluster: str | None = None
    last_error: str | None = None


@dataclass
class BatchResult:
    """What a run did. `stopped` holds the reason a run ended early (None: it finished or was cancelled)."""

    judge: str
    prompt_version: str
    progress: Progress
    cancelled: bool = False
    stopped: str | None = None
    elapsed_s: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (cluster, error), this run; DATASET:ID across datasets

    @property
    def remaining(self) -> int:
        """Clusters of this run still without an answer (failed, or never asked): the next run's work."""
        return self.progress.total - self.progress.proposed - self.progress.already


ProgressCallback = Callable[[Progress], object]

# Judges of runs in progress. When the process exits (the app's server on SIGTERM, a script
# that returns) their requests are aborted *before* Python joins the worker threads, so a
# server dripping its answer cannot hold the exit. `threading._register_atexit` is CPython's
# hook for exactly this (concurrent.futures uses it); where it is missing, exit waits as before.
_RUNNING: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _abort_running() -> None:
    for judge in list(_RUNNING):
        abort = getattr(judge, "abort", None)
        if abort is not None:
            abort()


_at_exit = getattr(threading, "_register_atexit", None)
if _at_exit is not None:
    _at_exit(_abort_running)


def make_judge(kind: str, config: EndpointConfig | None = None, template: PromptTemplate | None = None) -> Judge:
    """The judge named on the command line or chosen in the app."""
    if kind == "offline":
        from clusterqc.judges.offline import OfflineJudge

        return OfflineJudge()
    if kind == "llm":
        from clusterqc.judges.llm import LLMJudge

        return LLMJudge(config or EndpointConfig(), template)
    raise ValueError(f"unknown judge {kind!r}; choose from {', '.join(JUDGES)}")


def resolve_template(store: Store, ref: str | Path | None = None) -> PromptTemplate:
    """`--prompt`: a template file, or a stored prompt name/version; by default the active prompt."""
    from clusterqc.fewshot import active_template
    from clusterqc.prompt import TemplateError, load_template

    if ref is None:
        return active_template(store)
    stored = store.get_prompt(str(ref))
    if stored is not None:
        return PromptTemplate(stored["template"], name=stored["name"])
    if Path(ref).exists():
        return load_template(ref)
    raise TemplateError(f"--prompt {ref}: no such file, and no stored prompt of that name or version")


def record_prompt(store: Store, judge: Judge) -> None:
    """Keep the template a judge uses in the store, so every proposal's prompt can be read back."""
    template = getattr(judge, "template", None)
    if isinstance(template, PromptTemplate):
        save_template(store, template)


def _clusters(store: Store, keys: list[tuple[str, str]]) -> Iterator[Cluster]:
    """Load clusters ((dataset, id) keys, in order) a chunk at a time, fully read before any
    write (no cursor left open)."""
    for start in range(0, len(keys), LOAD_CHUNK):
        chunk = keys[start : start + LOAD_CHUNK]
        for dataset in dict.fromkeys(ds for ds, _ in chunk):
            yield from list(store.iter_clusters([cid for ds, cid in chunk if ds == dataset], dataset=dataset))


class _Run:
    """One batch: the window of futures, the counters and the commit of each result."""

    def __init__(self, store: Store, judge: Judge, total: int, progress: ProgressCallback | None,
                 max_transient: int):
        self.store, self.judge = store, judge
        self.state = Progress(total=total)
        self.callback = progress
        self.max_transient = max_transient
        self.transient_in_row = 0
        self.bad_in_row = 0
        self.succeeded = False
        self.stopped: str | None = None
        self.errors: list[tuple[str, str, str]] = []  # (dataset, cluster id, error): ids repeat across datasets
        self.transient_failed: list[tuple[str, str]] = []  # this round's (dataset, id) worth asking once more
        self.second_round = False

    def settle(self, future: Future[Proposal], key: tuple[str, str]) -> None:
        """Commit one finished request: a proposal, a logged failure, or a reason to stop."""
        dataset, cluster_id = key
        try:
            proposal = future.result()
        except JudgeError as exc:
            if exc.cancelled:
                return  # stopped on purpose: nothing wrong with this cluster, nothing to record
            self._failed(cluster_id, exc, dataset)
        else:
            self._store(replace(proposal, dataset=dataset), key)
        if not self.second_round:
            self.state.done += 1
        self.state.last_cluster = cluster_id
        self.tick()

    def tick(self) -> None:
        if self.callback is not None:
            self.callback(self.state)

    def _store(self, proposal: Proposal, key: tuple[str, str]) -> None:
        cluster_id = key[1]
        if (proposal.cluster_id, proposal.judge, proposal.prompt_version) != (
            cluster_id, self.judge.name, self.judge.prompt_version
        ):
            raise ValueError(f"judge {self.judge.name!r} answered for the wrong cluster, judge or prompt")
        if self.store.add_proposal(proposal) is None:
            self.state.already += 1
        else:
            self.state.proposed += 1
            self.state.unparsed += proposal.verdict is None
            self.state.prompt_tokens += proposal.prompt_tokens or 0
            self.state.completion_tokens += proposal.completion_tokens or 0
        if self.second_round:  # asked again and answered: no longer a failure of this run
            self.state.failed -= 1
            self.state.retrying -= 1
            self.errors = [(d, c, e) for d, c, e in self.errors if (d, c) != key]
        self.succeeded = True
        self.transient_in_row = self.bad_in_row = 0

    def _failed(self, cluster_id: str, exc: JudgeError, dataset: str) -> None:
        message = str(exc)
        self.state.last_error = message
        if exc.fatal:
            self.stopped = self.stopped or message
            return
        if not self.second_round:  # asked again and failed again: the first record stands
            self.store.add_failure(cluster_id, self.judge.name, self.judge.prompt_version, message, dataset=dataset)
        if self.second_round:
            self.state.retrying -= 1
            self.errors = [(d, c, message if (d, c) == (dataset, cluster_id) else e) for d, c, e in self.errors]
        else:
            self.state.failed += 1
            self.errors.append((dataset, cluster_id, message))
            if exc.transient:
                self.transient_failed.append((dataset, cluster_id))
        self.transient_in_row = self.transient_in_row + 1 if exc.transient else 0
        self.bad_in_row = self.bad_in_row + 1 if exc.bad_answer else 0
        if self.stopped is not None:
            return
        if self.bad_in_row >= MAX_BAD_ANSWERS:
            self.stopped = (
                f"{self.bad_in_row} answers in a row were not chat completions (last: {message}); "
                "this does not look like an OpenAI-compatible endpoint. Check the base URL."
            )
        elif self.transient_in_row >= self.max_transient:
            self.stopped = (
                f"{self.transient_in_row} requests in a row failed (last: {message}); "
                "the endpoint looks unavailable. Run again later to finish."
            )

    def error_lines(self) -> list[tuple[str, str]]:
        """(cluster, error) for the report: the id alone, or `DATASET:ID` when the database holds
        several datasets (two datasets' `Cluster_7` are two clusters), as other commands print them."""
        several = bool(self.errors) and len(self.store.dataset_names()) > 1
        return [(f"{d}:{c}" if several else c, e) for d, c, e in self.errors]

    def second_round_ids(self, cancel: threading.Event) -> list[tuple[str, str]]:
        """The clusters to ask once more at the end (once per run, never after a stop)."""
        if self.second_round or self.stopped is not None or cancel.is_set() or not self.transient_failed:
            return []
        self.second_round = True
        ids, self.transient_failed = self.transient_failed, []
        self.state.retrying = len(ids)
        self.transient_in_row = self.bad_in_row = 0
        return ids


def run_batch(
    store: Store,
    judge: Judge,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit: int | None = None,
    ids: Iterable[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    max_transient_failures: int | None = None,
    dataset: str | None = None,
    grace: float = DRAIN_GRACE,
) -> BatchResult:
    """Propose for every cluster that has no proposal yet from this judge and prompt version.

    Every dataset's clusters, or `dataset`'s (`ids` are of one dataset: the only one, or it).

    `store` is used only from the calling thread. `cancel` stops new requests; those in flight
    get `grace` seconds to finish and be stored, then are aborted. Exceptions from `progress`
    (e.g. a Streamlit rerun) and Ctrl-C propagate, after the same drain.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency {concurrency}: must be at least 1")
    started = time.perf_counter()
    record_prompt(store, judge)
    pending = store.pending_keys(judge.name, judge.prompt_version, limit=limit, ids=ids, dataset=dataset)
    run = _Run(store, judge, len(pending), progress,
               max_transient_failures or max(10, 2 * concurrency))
    cancel = cancel or threading.Event()
    todo = _clusters(store, pending)
    inflight: dict[Future[Proposal], tuple[str, str]] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="clusterqc-judge")
    abandoned = False
    try:
        _RUNNING.add(judge)
    except TypeError:  # a judge that cannot be weakly referenced: nothing to abort at exit
        pass
    try:
        while True:
            window = concurrency if run.succeeded else 1
            while len(inflight) < window and run.stopped is None and not cancel.is_set():
                cluster = next(todo, None)
                if cluster is None:
                    break
                inflight[pool.submit(judge.judge, cluster)] = (cluster.dataset, cluster.id)
            if cancel.is_set():
                break  # Stop: what is in flight gets the drain's grace, then is aborted
            if not inflight:
                again = run.second_round_ids(cancel)
                if not again:
                    break
                run.tick()
                cancel.wait(END_RETRY_PAUSE)  # a short storm is usually over by now
                todo = _clusters(store, again)
                continue
            finished, _ = wait(inflight, timeout=HEARTBEAT, return_when=FIRST_COMPLETED)
            if not finished:
                run.tick()  # nothing new, but the caller may show that the run is alive
            for future in finished:
                run.settle(future, inflight.pop(future))
    except BaseException:
        cancel.set()  # Ctrl-C or the caller leaving: stop as fast as a stop from outside
        raise
    finally:
        abandoned = _drain(run, inflight, judge, cancel, grace)
        pool.shutdown(wait=not abandoned, cancel_futures=True)
        _RUNNING.discard(judge)
    return BatchResult(
        judge=judge.name,
        prompt_version=judge.prompt_version,
        progress=run.state,
        cancelled=cancel.is_set() and run.stopped is None,
        stopped=run.stopped,
        elapsed_s=time.perf_counter() - started,
        errors=run.error_lines(),
    )


def _settle_within(run: _Run, inflight: dict[Future[Proposal], tuple[str, str]], seconds: float | None) -> None:
    """Store whatever finishes within `seconds` (None: wait for all of them)."""
    end = None if seconds is None else time.monotonic() + seconds
    while inflight:
        left = HEARTBEAT if end is None else min(HEARTBEAT, end - time.monotonic())
        if left <= 0:
            return
        finished, _ = wait(inflight, timeout=left, return_when=FIRST_COMPLETED)
        for future in finished:
            run.settle(future, inflight.pop(future))


def _drain(run: _Run, inflight: dict[Future[Proposal], tuple[str, str]], judge: Judge, cancel: threading.Event,
           grace: float) -> bool:
    """Store what is still in flight when a run ends: those requests are already paid for.

    After a stop from outside (Stop, Ctrl-C) they get `grace` seconds, then the judge aborts
    them; a second Ctrl-C aborts at once. Returns True when some never came back (left behind
    on their threads; they end on their own and store nothing).
    """
    run.callback = None  # the caller is leaving (cancel, Ctrl-C, rerun): no more progress calls
    for future in [f for f in inflight if f.cancel()]:
        inflight.pop(future)
    interrupted = False
    try:
        _settle_within(run, inflight, grace if cancel.is_set() else None)
    except KeyboardInterrupt:
        cancel.set()
        interrupted = True
    if inflight:
        abort = getattr(judge, "abort", None)
        if abort is not None:
            abort()
        _settle_within(run, inflight, ABORT_WAIT)
    if interrupted and sys.exc_info()[0] is None:
        raise KeyboardInterrupt
    return bool(inflight)


# --------------------------------------------------------------------------- background runs


class BatchJob(BackgroundJob):
    """A batch on its own thread with its own Store, for the app: the page reads `progress`,
    Stop cancels (jobs.py says why a thread)."""

    def __init__(self, db_path: str | Path, judge: Judge, concurrency: int = DEFAULT_CONCURRENCY,
                 limit: int | None = None, dataset: str | None = None):
        super().__init__("clusterqc-propose")
        self.db_path = Path(db_path)
        self.judge = judge
        self.progress: Progress | None = None
        self.result: BatchResult | None = None
        self._args = {"concurrency": concurrency, "limit": limit, "dataset": dataset}

    def _on_progress(self, progress: Progress) -> None:
        self.progress = progress

    def _run(self) -> None:
        try:
            with Store(self.db_path) as store:
                self.result = run_batch(store, self.judge, progress=self._on_progress, cancel=self.cancel,
                                        **self._args)  # type: ignore[arg-type]
                self.progress = self.result.progress
        except Exception as exc:  # noqa: BLE001 - shown on the page as one line, never lost silently
            line = str(exc).splitlines()[0] if str(exc) else "no details"
            secrets = getattr(getattr(self.judge, "config", None), "secrets", ())
            self.error = redact(f"{type(exc).__name__}: {line}", *secrets)
        finally:
            close = getattr(self.judge, "close", None)
            if close is not None:
                close()


# --------------------------------------------------------------------------- dry run


@dataclass(frozen=True)
class Plan:
    """What a run would do, computed without calling anything (`--dry-run`)."""

    judge: str
    prompt_version: str
    pending: int
    example_cluster: str | None
    example_prompt: str | None  # system + user messages as sent, for the first pending cluster
    estimated_tokens: int  # prompt and answer tokens for the whole run (about 4 chars a token)


def plan_run(store: Store, judge: Judge, limit: int | None = None, dataset: str | None = None) -> Plan:
    """The rendered prompt for one pending cluster and a token estimate for all of them."""
    from clusterqc.judges.llm import estimate_request_tokens

    pending = store.pending_keys(judge.name, judge.prompt_version, limit=limit, dataset=dataset)
    first = pending[0][1] if pending else None
    template = getattr(judge, "template", None)
    if not isinstance(template, PromptTemplate):
        return Plan(judge.name, judge.prompt_version, len(pending), first, None, 0)
    max_tokens = getattr(getattr(judge, "config", None), "max_tokens", None)
    total, example = 0, None
    for cluster in _clusters(store, pending):
        messages = template.messages(cluster)
        total += estimate_request_tokens(messages, max_tokens)
        if example is None:
            example = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
    return Plan(judge.name, judge.prompt_version, len(pending), first, example, total)


# --------------------------------------------------------------------------- imports


class ProposalImportError(ValueError):
    """An earlier run's output that cannot be imported; nothing was written."""


@dataclass(frozen=True)
class ImportSummary:
    read: int
    added: int
    unparsed: int


def import_proposals(store: Store, path: str | Path, judge: str, dataset: str | None = None) -> ImportSummary:
    """Bring the original pipeline's output in: its raw JSON (parsed by our parser) or its CSV.

    All or nothing: every cluster must already be in the store, so a typo'd file does not
    leave half its proposals behind.
    """
    from clusterqc.pipeline_io import read_parsed_csv, read_raw_classifications

    if not judge or not judge.strip():
        raise ProposalImportError(f"{path}: give the judge name these answers came from (--judge)")
    suffix = Path(path).suffix.lower()
    reader = {".json": read_raw_classifications, ".csv": read_parsed_csv}.get(suffix)
    if reader is None:
        raise ProposalImportError(
            f"{path}: expected the pipeline's raw classifications (.json) or its parsed CSV (.csv)"
        )
    ds = store.resolve_dataset(dataset)
    proposals = [replace(p, dataset=ds) for p in reader(path, judge.strip())]
    known = set(store.cluster_ids(ds))
    unknown = [p.cluster_id for p in proposals if p.cluster_id not in known]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ProposalImportError(
            f"{path}: cluster {unknown[0]!r}{more} not in the database (import the cluster file first)"
        )
    added = store.add_proposals(proposals)
    return ImportSummary(len(proposals), added, sum(p.verdict is None for p in proposals))
