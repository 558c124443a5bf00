"""Hostile endpoints (issue 11): drips, HTML 200s, wrong shapes, echoed secrets, huge answers.

The real `openai` client over real HTTP to the stand-in on 127.0.0.1, the real batch runner,
the real SQLite store. Each test is what an adversarial endpoint did to an earlier version:
it failed then (hung, crashed, stored a secret, or said something untrue) and must not now.
Waits here are hang guards (a join with a generous bound), never speed assertions.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc import progress
from clusterqc.cli import cli
from clusterqc.judges.llm import RAW_LIMIT, LLMJudge
from clusterqc.model import Verdict
from clusterqc.propose import BatchJob, BatchResult, run_batch
from clusterqc.settings import DEFAULT_MAX_TOKENS, EndpointConfig
from clusterqc.store import Store
from conftest import cluster_in_prompt, llm_judge, marked_clusters
from openai_standin import Reply, StandIn

KEY = "sk-test-hostile-0123456789abcdef"
HANG_GUARD_S = 15  # far beyond what a bounded run needs; only a hang reaches it
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(six_clusters: Store) -> Store:
    return six_clusters


def judge_for(server: StandIn, **overrides: object) -> LLMJudge:
    return llm_judge(server, KEY, **{"model": "m", **overrides})


def run_in_thread(store_path: Path, judge: LLMJudge, **kwargs: object) -> tuple[threading.Thread, list]:
    """run_batch on its own thread with its own Store (as the app's BatchJob does)."""
    out: list[BatchResult | BaseException] = []

    def target() -> None:
        try:
            with Store(store_path) as s:
                out.append(run_batch(s, judge, **kwargs))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def wait_for(condition, seconds: float = HANG_GUARD_S) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- item 5: hangs


def test_a_dripping_body_is_cut_off_at_the_timeout(standin: StandIn, store: Store) -> None:
    """`--timeout` bounds the whole attempt: one byte every 20 ms never trips a per-read limit,
    and the ~1 KB answer would take ~20 s; with a 1 s timeout the attempt ends at 1 s."""
    standin.handler = lambda req: Reply(drip=0.02)
    thread, out = run_in_thread(store.path, judge_for(standin, timeout=1.0, max_retries=0), limit=1)
    thread.join(HANG_GUARD_S)

    assert not thread.is_alive(), "the request was not bounded by --timeout"
    [result] = out
    assert isinstance(result, BatchResult) and result.progress.failed == 1
    [failure] = store.failures()
    assert "timed out after 1 s" in failure["error"] and "no retries" in failure["error"]
    assert store.proposals() == []


def test_a_dripping_body_within_the_timeout_is_still_read(standin: StandIn, store: Store) -> None:
    """The deadline does not cut short an answer that arrives in time, however it trickles."""
    standin.handler = lambda req: Reply(raw_body=json.dumps({
        "choices": [{"message": {"content": "Classification: Acceptable"}, "finish_reason": "stop"}]}).encode(),
        drip=0.002)
    result = run_batch(store, judge_for(standin, timeout=5.0, max_retries=0), limit=1)
    assert result.progress.proposed == 1 and store.proposals()[0].verdict is Verdict.ACCEPTABLE


def test_stop_in_the_app_returns_while_a_request_drips(standin: StandIn, store: Store) -> None:
    standin.handler = lambda req: Reply(drip=0.05)
    job = BatchJob(store.path, judge_for(standin, timeout=60.0, max_retries=4), concurrency=2).start()
    assert wait_for(lambda: len(standin.chat_requests()) >= 1)
    job.stop()

    assert job.wait(HANG_GUARD_S), "Stop waited for the dripping request"
    assert job.error is None and job.result is not None and job.result.cancelled
    assert store.failures() == [] and store.proposals() == []  # a stop is no failure of the cluster


def test_stop_interrupts_the_clients_retry_pause(standin: StandIn, store: Store) -> None:
    """A 429 with Retry-After: 100 makes the client sleep 100 s before its retry; Stop ends that."""
    standin.handler = lambda req: Reply(status=429, headers={"Retry-After": "100"})
    job = BatchJob(store.path, judge_for(standin, timeout=5.0, max_retries=3), concurrency=1).start()
    assert wait_for(lambda: len(standin.chat_requests()) >= 1)
    time.sleep(0.3)  # the client is now in its pause
    job.stop()

    assert job.wait(HANG_GUARD_S), "Stop waited for the client's Retry-After pause"
    assert job.result is not None and job.result.cancelled
    assert len(standin.chat_requests()) == 1


def test_ctrl_c_stops_a_cli_run_and_keeps_every_stored_answer(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "sigint.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(6))
    fast = {"Cluster_0", "Cluster_1"}
    standin.handler = lambda req: None if cluster_in_prompt(req.prompt) in fast else Reply(drip=0.05)
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterqc", "propose", "--db", str(db), "--judge", "llm", "--model", "m",
         "--base-url", standin.base_url, "--concurrency", "1", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        # A generous bound: a fresh interpreter importing the HTTP stack on a loaded machine.
        assert wait_for(lambda: len(standin.chat_requests()) >= 3, 90), "the run never reached the dripping cluster"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            pytest.fail("Ctrl-C did not stop the run")
    assert proc.returncode == 130, err
    assert "interrupted: every answer received so far is stored" in err and "Traceback" not in err
    with Store(db) as s:
        assert sorted(p.cluster_id for p in s.proposals()) == sorted(fast)
        assert s.failures() == []


_EXIT_WHILE_RUNNING = """
import sys
from clusterqc.judges.llm import LLMJudge
from clusterqc.propose import BatchJob
from clusterqc.settings import EndpointConfig
judge = LLMJudge(EndpointConfig(model="m", base_url=sys.argv[2], api_key="sk-exit-0123456789", timeout=60))
job = BatchJob(sys.argv[1], judge, concurrency=2).start()
sys.stdin.readline()  # the test says when: a request is dripping now
print("leaving", flush=True)
"""


def test_the_process_exits_while_a_run_drips(standin: StandIn, tmp_path: Path) -> None:
    """The app's server on SIGTERM (or any script) ends its main thread while a BatchJob runs:
    Python then joins the worker threads, which waited for the drip; now they are aborted."""
    db = tmp_path / "exit.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(3))
    standin.handler = lambda req: Reply(drip=0.05)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _EXIT_WHILE_RUNNING, str(db), standin.base_url],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_for(lambda: len(standin.chat_requests()) >= 1, 90)
        out, err = proc.communicate("go\n", timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            pytest.fail("the process did not exit while a request dripped")
    assert proc.returncode == 0 and "leaving" in out, err


# --------------------------------------------------------------------------- item 6: 200s that are no answer

LOGIN_PAGE = (b"<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>Acme Proxy - Sign in required</title>"
              b"</head><body><h1>Please sign in</h1><form>...</form></body></html>")


@pytest.mark.parametrize(
    "reply, shown",
    [
        (Reply(raw_body=LOGIN_PAGE, content_type="text/html"), "Acme Proxy - Sign in required"),
        (Reply(raw_body=b"model overloaded, try again later\nrequest id 42", content_type="text/plain"),
         "model overloaded, try again later"),
        (Reply(document={"error": {"message": "The model is overloaded. Retry later.", "type": "server_error"}}),
         "The model is overloaded. Retry later."),
    ],
    ids=["html-login-page", "plain-text", "error-document"],
)
def test_a_run_of_200s_that_are_no_answer_stops_with_the_servers_own_line(
    standin: StandIn, store: Store, reply: Reply, shown: str
) -> None:
    standin.handler = lambda req: reply
    result = run_batch(store, judge_for(standin, max_retries=0), concurrency=4)

    assert result.stopped is not None and shown in result.stopped, result.stopped
    assert "no choices" not in result.stopped
    assert len(standin.chat_requests()) == 3  # a few in a row, not every cluster in turn
    assert store.proposals() == []
    assert all(shown in f["error"] for f in store.failures())


# --------------------------------------------------------------------------- item 7: a storm at the start


def test_a_short_storm_at_the_start_leaves_no_failed_clusters(standin: StandIn, store: Store) -> None:
    start = time.monotonic()
    standin.handler = lambda req: (Reply(status=503, error_message="overloaded")
                                   if time.monotonic() - start < 1.0 else None)
    result = run_batch(store, judge_for(standin, max_retries=1), concurrency=2)

    assert any(r.status == 503 and r.retry_count == 1 for r in standin.chat_requests()), "no storm happened"
    assert result.stopped is None and result.progress.proposed == 6 and result.progress.failed == 0
    assert result.errors == [] and store.failures() == []
    asked = [cluster_in_prompt(r.prompt) for r in standin.chat_requests()]
    assert max(asked.count(c) for c in set(asked)) <= 4  # bounded: 2 attempts, twice at most


def test_the_end_of_run_round_is_skipped_when_the_run_stopped(standin: StandIn, store: Store) -> None:
    standin.handler = lambda req: Reply(status=503, error_message="down")
    result = run_batch(store, judge_for(standin, max_retries=0), concurrency=1, max_transient_failures=3)
    assert result.stopped and "in a row" in result.stopped
    assert len(standin.chat_requests()) == 3


# --------------------------------------------------------------------------- item 8: wrong shapes

PARTS = [{"type": "text", "text": "Reason: Varied places.\n"}, {"type": "image_url", "image_url": {"url": "x"}},
         {"type": "text", "text": "Classification: Acceptable"}]


@pytest.mark.parametrize(
    "reply, verdict",
    [
        (Reply(content_value=PARTS), Verdict.ACCEPTABLE),
        (Reply(content_value={"classification": "Unacceptable", "reason": "dupes"}), Verdict.UNACCEPTABLE),
        (Reply(content="Classification: Acceptable", usage={"prompt_tokens": "many", "completion_tokens": -5, "total_tokens": "x"}),
         Verdict.ACCEPTABLE),
        (Reply(content="Classification: Acceptable", usage={"prompt_tokens": 10**30, "completion_tokens": True}),
         Verdict.ACCEPTABLE),
        (Reply(document={"choices": [{"message": {"content": "Classification: Acceptable"}}], "usage": "lots"}),
         Verdict.ACCEPTABLE),
    ],
    ids=["content-parts", "content-dict", "usage-string-and-negative", "usage-huge-and-bool", "usage-not-a-dict"],
)
def test_odd_but_readable_answers_are_stored(standin: StandIn, store: Store, reply: Reply,
                                             verdict: Verdict) -> None:
    standin.handler = lambda req: reply
    result = run_batch(store, judge_for(standin), limit=1)

    assert result.progress.proposed == 1 and result.progress.failed == 0
    [p] = store.proposals()
    assert p.verdict is verdict
    assert p.prompt_tokens in (None,) or isinstance(p.prompt_tokens, int) and 0 <= p.prompt_tokens < 10**9
    assert p.completion_tokens is None or isinstance(p.completion_tokens, int) and p.completion_tokens >= 0
    if reply.usage is not None or reply.document is not None:
        assert (p.prompt_tokens, p.completion_tokens) == (None, None)
    if reply.content_value is PARTS:
        assert p.raw == "Reason: Varied places.\nClassification: Acceptable"


@pytest.mark.parametrize(
    "reply, said",
    [
        (Reply(content_value=42), "content is a int"),
        (Reply(content_value=True), "content is a bool"),
        (Reply(document={"choices": None}), "no choices (choices: null)"),
        (Reply(document={"choices": "Classification: Acceptable"}), "no choices (choices: str)"),
        (Reply(document={"choices": []}), "no choices (choices: [])"),
        (Reply(document=[1, 2, 3]), "JSON list instead of a chat completion"),
        (Reply(document={"choices": [{"message": "Acceptable"}]}), "message is a str, not an object"),
    ],
    ids=["content-int", "content-bool", "choices-null", "choices-string", "choices-empty", "body-a-list",
         "message-a-string"],
)
def test_unreadable_shapes_are_a_clear_failure_not_a_crash(standin: StandIn, store: Store, reply: Reply,
                                                           said: str) -> None:
    standin.handler = lambda req: reply
    result = run_batch(store, judge_for(standin), concurrency=2)

    assert result.progress.proposed == 0 and store.proposals() == []
    assert result.stopped is not None and said in result.stopped, result.stopped
    assert all(said in f["error"] and "Traceback" not in f["error"] for f in store.failures())


# --------------------------------------------------------------------------- items 13, 14: secrets

URL_PASSWORD = "hunter2-url-secret"


def test_base_url_credentials_are_never_shown_or_stored(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "creds.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(3))
    url = standin.base_url.replace("http://", f"http://alice:{URL_PASSWORD}@")
    standin.handler = lambda req: (Reply(status=400, error_message=f"bad request for {url}/chat/completions")
                                   if cluster_in_prompt(req.prompt) == "Cluster_1" else None)
    result = CliRunner().invoke(
        cli, ["propose", "--db", str(db), "--judge", "llm", "--model", "m", "--base-url", url, "--max-retries", "0"],
        env={"OPENAI_API_KEY": KEY},
    )
    assert result.exit_code == 1, result.output
    assert "failed Cluster_1: 400" in result.output and "http://***@127.0.0.1" in result.output
    assert URL_PASSWORD not in result.output
    with Store(db) as s:
        [failure] = s.failures()
        assert URL_PASSWORD not in json.dumps(failure, default=str)
        assert len(s.proposals()) == 2


def test_base_url_credentials_stay_out_of_the_http_clients_logs(standin: StandIn, store: Store,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    url = standin.base_url.replace("http://", f"http://alice:{URL_PASSWORD}@")
    with caplog.at_level(logging.DEBUG):
        result = run_batch(store, llm_judge(standin, KEY, model="m", base_url=url), limit=1)
    assert result.progress.proposed == 1
    assert "HTTP Request: POST" in caplog.text  # the client did log the request it sent
    assert URL_PASSWORD not in caplog.text and KEY not in caplog.text


def test_a_judge_built_with_url_credentials_describes_itself_without_them() -> None:
    cfg = EndpointConfig(base_url=f"https://bob:{URL_PASSWORD}@llm.internal/v1", api_key=KEY, key_source="$K")
    assert URL_PASSWORD not in cfg.describe() and URL_PASSWORD not in repr(cfg)
    assert cfg.shown_url == "https://***@llm.internal/v1"


@pytest.mark.parametrize("key", [KEY, "local-token-98765"], ids=["sk-key", "any-token"])
def test_a_key_echoed_in_a_200_answer_is_not_stored(standin: StandIn, store: Store, key: str) -> None:
    standin.handler = lambda req: (f"Reason: Authorised with {req.api_key}; captions vary.\n"
                                   f"Classification: Acceptable ({req.api_key})")
    result = run_batch(store, llm_judge(standin, key, model="m"), limit=1)

    assert result.progress.proposed == 1
    assert standin.chat_requests()[0].api_key == key  # it really was echoed
    [p] = store.proposals()
    assert key not in p.raw and key not in p.reason and "***" in p.raw
    assert p.verdict is Verdict.ACCEPTABLE


# --------------------------------------------------------------------------- item 17: caps


def test_a_huge_answer_is_stored_capped_and_max_tokens_is_sent_by_default(standin: StandIn, store: Store) -> None:
    standin.answer = lambda prompt: "Reason: " + "very long. " * 100_000 + "\nClassification: Unacceptable"
    run_batch(store, judge_for(standin), limit=1)

    [p] = store.proposals()
    assert p.verdict is Verdict.UNACCEPTABLE
    assert len(p.raw) <= RAW_LIMIT + 100 and "characters left out" in p.raw
    assert p.raw.endswith("Classification: Unacceptable")
    assert len(p.reason) <= 9 * 1024
    assert standin.chat_requests()[0].body["max_tokens"] == DEFAULT_MAX_TOKENS


def test_max_tokens_zero_means_no_cap(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "cap.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(1))
    result = CliRunner().invoke(cli, ["propose", "--db", str(db), "--judge", "llm", "--model", "m",
                                      "--base-url", standin.base_url, "--max-tokens", "0"], env={"OPENAI_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "max_tokens" not in standin.chat_requests()[0].body


# --------------------------------------------------------------------------- item 19: true messages


def test_retry_after_longer_than_the_client_waits_says_no_retries_were_made(standin: StandIn,
                                                                            store: Store) -> None:
    standin.handler = lambda req: Reply(status=429, headers={"Retry-After": "3600"}, error_message="slow down")
    result = run_batch(store, judge_for(standin, max_retries=4), limit=1)

    assert result.progress.failed == 1
    message = store.failures()[0]["error"]
    assert "retries" in message and "after 1 retries" not in message and "after 4 retries" not in message
    assert "Retry-After 3600 s" in message and "no retries" in message
    assert all(r.retry_count == 0 for r in standin.chat_requests())


def test_retries_in_messages_are_the_retries_made(standin: StandIn, store: Store) -> None:
    standin.handler = lambda req: Reply(status=500, headers={"Retry-After-Ms": "10"}, error_message="boom")
    run_batch(store, judge_for(standin, max_retries=2), limit=1)
    assert "after 2 retries" in store.failures()[0]["error"]


# --------------------------------------------------------------------------- issue 16: a closed port


def closed_port_url() -> str:
    server = StandIn()  # bound, never started, then closed: connections are refused
    url = server.base_url
    server._server.server_close()
    return url


def test_propose_against_a_closed_port_fails_at_once_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "closed.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(6))
    url = closed_port_url()
    result = CliRunner().invoke(cli, ["propose", "--db", str(db), "--judge", "llm", "--model", "m",
                                      "--base-url", url, "--max-retries", "2"], env={"OPENAI_API_KEY": KEY})
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "connection refused" in errors[0] and url in errors[0], result.output
    assert "Traceback" not in result.output
    with Store(db) as s:
        assert s.failures() == []  # nothing was wrong with any cluster


def test_a_run_that_is_not_on_a_terminal_prints_progress_lines(standin: StandIn, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV_INTERVAL, "0.2")
    db = tmp_path / "progress.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(4))
    standin.latency = 0.4
    standin.enqueue(Reply(latency=1.5))  # the first answer is slow: liveness before any result
    result = CliRunner().invoke(cli, ["propose", "--db", str(db), "--judge", "llm", "--model", "m",
                                      "--base-url", standin.base_url, "--concurrency", "1"],
                                env={"OPENAI_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith("propose: ")]
    assert lines and lines[0].strip().startswith("propose: 0"), result.output  # alive before any answer
    assert len(lines) >= 3
