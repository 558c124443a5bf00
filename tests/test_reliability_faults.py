"""Flaky endpoints: outages, stalls, cut-off bodies, context-length errors and rate limits.

Real HTTP to the stand-in server on 127.0.0.1, the real `openai` client, the real batch
runner. The promises: a batch survives what a provider does on a bad day, no cluster is asked
more than `max_retries + 1` times per round (no retry storm; a run that was not stopped asks
its transient failures once more at the end), the client's backoff grows, `Retry-After` is
honoured, one cluster's permanent error does not stop the others, and a re-run after an
outage finishes the work without asking twice about anything already answered.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.judges.llm import LLMJudge
from clusterqc.propose import run_batch
from clusterqc.store import Store
from conftest import cluster_in_prompt, llm_judge, marked_clusters
from openai_standin import Reply, SeenRequest, StandIn

KEY = "sk-test-faults-0123456789abcdef"
BACKOFF_FLOOR = 0.5 * 0.75  # the openai client's first backoff (0.5 s) less its largest jitter (25%)


@pytest.fixture
def store(six_clusters: Store) -> Store:
    return six_clusters


def judge_for(server: StandIn, **overrides: object) -> LLMJudge:
    return llm_judge(server, KEY, **{"model": "m", **overrides})


def attempts_by_cluster(server: StandIn) -> dict[str | None, list[SeenRequest]]:
    out: dict[str | None, list[SeenRequest]] = defaultdict(list)
    for request in server.chat_requests():
        out[cluster_in_prompt(request.prompt)].append(request)
    return out


def per_cluster(handler: Callable[[str | None, int], Reply | None]) -> Callable[[SeenRequest], Reply | None]:
    """A stand-in handler given (cluster id, how many times this cluster was asked before)."""
    seen: dict[str | None, int] = defaultdict(int)
    lock = threading.Lock()

    def handle(request: SeenRequest) -> Reply | None:
        cluster = cluster_in_prompt(request.prompt)
        with lock:
            n = seen[cluster]
            seen[cluster] += 1
        return handler(cluster, n)

    return handle


# --------------------------------------------------------------------------- outages


def test_short_outage_is_ridden_out_with_growing_backoff(standin: StandIn, store: Store) -> None:
    standin.enqueue(*[Reply(status=503, error_message="Service Unavailable")] * 3)
    result = run_batch(store, judge_for(standin, max_retries=4), concurrency=3)

    assert result.progress.proposed == 6 and result.progress.failed == 0 and result.stopped is None
    first = attempts_by_cluster(standin)["Cluster_0"]
    assert [r.status for r in first] == [503, 503, 503, 200]
    assert [r.retry_count for r in first] == [0, 1, 2, 3]
    gaps = [nxt.received_at - prev.finished_at for prev, nxt in zip(first, first[1:])]
    # Exponential: each wait is at least the floor for its retry and longer than the one before.
    assert all(gap >= BACKOFF_FLOOR * 2**k for k, gap in enumerate(gaps)), gaps
    assert gaps == sorted(gaps)
    assert len(standin.chat_requests()) == 6 + 3


def test_long_outage_stops_the_batch_without_a_retry_storm_and_a_rerun_finishes(
    standin: StandIn, store: Store
) -> None:
    down = threading.Event()
    down.set()
    standin.handler = lambda req: Reply(status=503, error_message="upstream overloaded") if down.is_set() else None
    judge = judge_for(standin, max_retries=1)
    result = run_batch(store, judge, concurrency=2, max_transient_failures=3)

    assert result.stopped is not None and "in a row" in result.stopped and "503" in result.stopped
    attempts = attempts_by_cluster(standin)
    assert all(len(tries) <= 2 for tries in attempts.values()), "a cluster was asked more than max_retries + 1 times"
    # Bounded: the failures that stop the run plus those already in flight, each with one retry.
    assert len(standin.chat_requests()) <= (3 + 2) * 2
    assert store.proposals() == [] and 3 <= len(store.failures()) <= 5

    down.clear()  # the provider is back
    standin.reset()
    again = run_batch(store, judge, concurrency=2)
    assert again.progress.proposed == 6 and again.stopped is None
    assert sorted(attempts_by_cluster(standin)) == [f"Cluster_{i}" for i in range(6)]
    assert all(len(tries) == 1 for tries in attempts_by_cluster(standin).values())
    assert store.failures() == [] and len(store.proposals()) == 6


# --------------------------------------------------------------------------- stalls and cut-offs


@pytest.mark.parametrize(
    "stall",
    [Reply(latency=2.0), Reply(body_delay=2.0)],
    ids=["no-first-byte", "headers-then-silence"],
)
def test_stalls_beyond_the_timeout_are_retried_then_recorded(standin: StandIn, store: Store, stall: Reply) -> None:
    def handler(cluster: str | None, n: int) -> Reply | None:
        if cluster == "Cluster_1" or (cluster == "Cluster_2" and n < 2):
            return stall
        return None

    standin.handler = per_cluster(handler)
    result = run_batch(store, judge_for(standin, timeout=0.4, max_retries=2), concurrency=6)

    assert result.stopped is None and result.progress.proposed == 5 and result.progress.failed == 1
    [failure] = store.failures()
    assert failure["cluster_id"] == "Cluster_1" and "timed out" in failure["error"]
    attempts = attempts_by_cluster(standin)
    # Cluster_1: three attempts, then three more in the end-of-run round; Cluster_2 recovers.
    assert len(attempts["Cluster_1"]) == 6 and len(attempts["Cluster_2"]) == 3
    assert all(len(attempts[f"Cluster_{i}"]) == 1 for i in (0, 3, 4, 5))
    assert store.get_proposal(next(p.id for p in store.proposals() if p.cluster_id == "Cluster_2")).verdict


def test_body_cut_off_every_time_fails_that_cluster_only(standin: StandIn, store: Store) -> None:
    standin.handler = per_cluster(lambda cluster, n: Reply(cut_body=True) if cluster == "Cluster_3" else None)
    result = run_batch(store, judge_for(standin, max_retries=2), concurrency=3)

    assert result.stopped is None and result.progress.proposed == 5 and result.progress.failed == 1
    assert len(attempts_by_cluster(standin)["Cluster_3"]) == 3 * 2  # and once more at the end of the run
    [failure] = store.failures()
    assert failure["cluster_id"] == "Cluster_3" and failure["error"].strip()
    assert "Traceback" not in failure["error"]


# --------------------------------------------------------------------------- context length


def test_context_length_error_is_reported_for_that_cluster_from_the_cli(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(6))
    message = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens."
    standin.handler = per_cluster(
        lambda cluster, n: Reply(status=400, error_message=message) if cluster == "Cluster_4" else None
    )
    result = CliRunner().invoke(
        cli,
        ["propose", "--db", str(db), "--judge", "llm", "--model", "m", "--base-url", standin.base_url,
         "--max-retries", "3", "--concurrency", "3"],
        env={"OPENAI_API_KEY": KEY},
    )
    assert result.exit_code == 1, result.output  # the batch went on, but the work is not finished
    assert "proposed 5 of 6 clusters (0 unparsed, 1 failed)" in result.output
    assert "error: 1 cluster failed; run again to retry them" in result.output
    assert "failed Cluster_4: 400" in result.output and "maximum context length" in result.output
    assert [r.status for r in attempts_by_cluster(standin)["Cluster_4"]] == [400]  # never retried
    with Store(db) as s:
        assert [f["cluster_id"] for f in s.failures()] == ["Cluster_4"]


# --------------------------------------------------------------------------- rate limits


class WindowLimit:
    """A provider's limit, scaled from a minute to `window` seconds: at most `budget` units
    (requests, or prompt tokens) accepted in any window; beyond it a 429 with Retry-After."""

    def __init__(self, budget: float, cost: Callable[[SeenRequest], float], window: float = 1.0):
        self.budget, self.cost, self.window = budget, cost, window
        self.accepted: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, request: SeenRequest) -> Reply | None:
        now, cost = time.monotonic(), self.cost(request)
        with self.lock:
            self.accepted = [(t, c) for t, c in self.accepted if now - t < self.window]
            if sum(c for _, c in self.accepted) + cost <= self.budget:
                self.accepted.append((now, cost))
                return None
        return Reply(
            status=429,
            headers={"Retry-After": "1", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
            error_message="Rate limit reached for requests per min (RPM). Please try again in 1s.",
        )


def prompt_tokens(request: SeenRequest) -> float:
    return sum(len(str(m.get("content", ""))) for m in request.messages) / 4


@pytest.mark.parametrize("kind", ["requests", "tokens"])
def test_rate_limits_are_honoured_and_every_cluster_gets_an_answer(
    standin: StandIn, store: Store, kind: str, tmp_path: Path
) -> None:
    if kind == "requests":
        limit = WindowLimit(2, lambda request: 1.0)
    else:
        one = prompt_tokens(SeenRequest(0, "POST", "", {}, {"messages": judge_for(standin).request_args(
            store.get_cluster("Cluster_0"))["messages"]}))
        limit = WindowLimit(2.5 * one, prompt_tokens)
    standin.handler = limit
    result = run_batch(store, judge_for(standin, max_retries=10), concurrency=4)

    assert result.progress.proposed == 6 and result.progress.failed == 0 and result.stopped is None
    requests = standin.chat_requests()
    assert any(r.status == 429 for r in requests), "the limit never bit: the scenario did not happen"
    for cluster, tries in attempts_by_cluster(standin).items():
        assert len(tries) <= 11
        assert [r.status for r in tries][-1] == 200 and all(r.status == 429 for r in tries[:-1]), cluster
        for limited, retry in zip(tries, tries[1:]):
            assert retry.retry_count == limited.retry_count + 1
            assert retry.received_at - limited.finished_at >= 1.0, "Retry-After: 1 was not honoured"
