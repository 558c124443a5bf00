"""The LLM judge with the real `openai` client over HTTP against the stand-in server.

Each test scripts the server (tests/openai_standin.py), runs the judge through the same batch
runner the CLI and app use, and checks both what was stored and what the server saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.judges.base import JudgeError
from clusterqc.judges.llm import LLMJudge
from clusterqc.judges.ratelimit import RateLimiter
from clusterqc.model import Verdict
from clusterqc.prompt import SYSTEM_MESSAGE, default_template
from clusterqc.propose import run_batch
from clusterqc.settings import EndpointConfig, SettingsError, redact, resolve_endpoint
from clusterqc.store import Store
from conftest import cluster_in_prompt, llm_judge, marked_clusters
from openai_standin import Reply, StandIn

KEY = "sk-test-0123456789abcdefghij"


@pytest.fixture
def store(six_clusters: Store) -> Store:
    return six_clusters


def judge_for(server: StandIn, **overrides: object) -> LLMJudge:
    return llm_judge(server, KEY, **{"model": "test-model", **overrides})


def test_success_stores_verdict_tokens_latency_and_prompt(standin: StandIn, store: Store) -> None:
    standin.answer = lambda prompt: "### Reason: **Repetitive** bicycles.\nClassification: Unacceptable."
    result = run_batch(store, judge_for(standin), concurrency=3, limit=2)

    assert result.progress.proposed == 2 and result.stopped is None
    [first, second] = store.proposals()
    assert (first.cluster_id, second.cluster_id) == ("Cluster_0", "Cluster_1")
    assert first.judge == "test-model"
    assert first.prompt_version == default_template().version
    assert first.verdict is Verdict.UNACCEPTABLE and "Repetitive" in first.reason
    assert first.prompt_tokens and first.prompt_tokens > 100 and first.completion_tokens
    assert first.latency_s is not None and first.latency_s > 0
    assert store.get_prompt(first.prompt_version)["template"] == default_template().text
    sent = standin.chat_requests()[0]
    cluster = store.get_cluster("Cluster_0")
    assert sent.api_key == KEY
    assert sent.body["model"] == "test-model" and sent.body["temperature"] == 0
    assert sent.messages == [{"role": "system", "content": SYSTEM_MESSAGE},
                             {"role": "user", "content": default_template().render(cluster)}]


def test_429_retry_after_is_honoured(standin: StandIn, store: Store) -> None:
    standin.enqueue(Reply(status=429, headers={"Retry-After": "1"}))
    result = run_batch(store, judge_for(standin), limit=1)

    assert result.progress.proposed == 1 and result.progress.failed == 0
    limited, retried = standin.chat_requests()
    assert limited.status == 429 and retried.status == 200 and retried.retry_count == 1
    assert retried.received_at - limited.finished_at >= 1.0


def test_500_then_success(standin: StandIn, store: Store) -> None:
    standin.enqueue(Reply(status=500, headers={"Retry-After-Ms": "10"}))
    result = run_batch(store, judge_for(standin), limit=1)

    assert [r.status for r in standin.chat_requests()] == [500, 200]
    assert result.progress.proposed == 1 and store.failures() == []


def test_cut_off_body_is_retried(standin: StandIn, store: Store) -> None:
    standin.enqueue(Reply(cut_body=True))
    result = run_batch(store, judge_for(standin), limit=1)

    assert len(standin.chat_requests()) == 2
    assert result.progress.proposed == 1


def test_wrong_key_one_request_clear_error_batch_stops(standin: StandIn, store: Store) -> None:
    # The server echoes the key it got, as some do: it must not reach the message we show.
    standin.handler = lambda req: Reply(status=401, error_message=f"Incorrect API key provided: {req.api_key}.")
    result = run_batch(store, judge_for(standin), concurrency=8)

    assert len(standin.chat_requests()) == 1
    assert result.stopped is not None and "401" in result.stopped and "$OPENAI_API_KEY" in result.stopped
    assert KEY not in result.stopped
    assert store.proposals() == [] and store.failures() == []
    assert result.remaining == 6


def test_404_model_stops_with_hint(standin: StandIn, store: Store) -> None:
    standin.enqueue(Reply(status=404, error_message="The model `nope` does not exist"))
    result = run_batch(store, judge_for(standin, model="nope"), concurrency=4)

    assert len(standin.chat_requests()) == 1
    assert result.stopped and "404" in result.stopped and "'nope'" in result.stopped and "/v1" in result.stopped


def test_timeout_is_a_failure_and_the_next_run_retries_it(standin: StandIn, store: Store) -> None:
    standin.enqueue(*[Reply(latency=1.5)] * 4)
    judge = judge_for(standin, timeout=0.3, max_retries=1)
    result = run_batch(store, judge, limit=1)

    # The first try and the client's one retry, then the same once more at the end of the run.
    assert [r.retry_count for r in standin.chat_requests()] == [0, 1, 0, 1]
    assert result.progress.failed == 1 and result.stopped is None
    [failure] = store.failures()
    assert failure["cluster_id"] == "Cluster_0" and "timed out" in failure["error"]
    assert store.proposals() == []

    again = run_batch(store, judge, limit=1)
    assert again.progress.proposed == 1 and store.failures() == []


def test_malformed_answer_stored_unparsed(standin: StandIn, store: Store) -> None:
    standin.answer = lambda prompt: "I'd rather not say. It could be Acceptable or Unacceptable."
    result = run_batch(store, judge_for(standin), limit=1)

    [p] = store.proposals()
    assert result.progress.unparsed == 1
    assert p.verdict is None and p.parse_error
    assert p.raw == "I'd rather not say. It could be Acceptable or Unacceptable."


def test_400_fails_one_cluster_and_the_batch_goes_on(standin: StandIn, store: Store) -> None:
    def handler(req):  # type: ignore[no-untyped-def]
        if cluster_in_prompt(req.prompt) == "Cluster_2":
            return Reply(status=400, error_message="This model's maximum context length is 8192 tokens.")
        return None

    standin.handler = handler
    result = run_batch(store, judge_for(standin), concurrency=2)

    assert result.stopped is None and result.progress.proposed == 5 and result.progress.failed == 1
    [failure] = store.failures()
    assert failure["cluster_id"] == "Cluster_2" and "context length" in failure["error"]
    statuses = [r.status for r in standin.chat_requests() if cluster_in_prompt(r.prompt) == "Cluster_2"]
    assert statuses == [400]  # not retried


def test_non_json_body_is_a_failure_not_a_crash(standin: StandIn, store: Store) -> None:
    standin.handler = lambda req: (Reply(raw_body=b"<html>gateway</html>")
                                   if cluster_in_prompt(req.prompt) == "Cluster_1" else None)
    result = run_batch(store, judge_for(standin), concurrency=1, limit=3)

    assert result.progress.proposed == 2 and result.progress.failed == 1 and result.stopped is None
    assert "instead of a chat completion: gateway" in store.failures()[0]["error"]


def test_endpoint_down_stops_after_failures_in_a_row(store: Store) -> None:
    server = StandIn().start()
    judge = LLMJudge(EndpointConfig(model="m", base_url=server.base_url, api_key=KEY, max_retries=0, timeout=2))
    assert run_batch(store, judge, limit=1).progress.proposed == 1
    server.stop()  # it answered once, then went away: connections are refused from now on
    result = run_batch(store, judge, concurrency=1, max_transient_failures=3)

    assert result.stopped and "in a row" in result.stopped and "cannot reach" in result.stopped
    assert result.progress.failed == 3 and len(store.failures()) == 3


def test_truncated_answer_explains_max_tokens(standin: StandIn, store: Store) -> None:
    standin.enqueue(Reply(content="Reason: The captions are", finish_reason="length"))
    run_batch(store, judge_for(standin, max_tokens=5), limit=1)

    assert standin.chat_requests()[0].body["max_tokens"] == 5
    [p] = store.proposals()
    assert p.verdict is None and "cut off at max tokens" in (p.parse_error or "")


def test_cli_never_prints_the_key(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(3))
    standin.handler = lambda req: Reply(status=401, error_message=f"Incorrect API key provided: {req.api_key}")
    result = CliRunner().invoke(
        cli, ["propose", "--db", str(db), "--base-url", standin.base_url, "--model", "m"],
        env={"OPENAI_API_KEY": KEY, "CLUSTERQC_DB": None},
    )
    assert result.exit_code == 1
    assert "401" in result.output and "stopped" in result.output
    assert KEY not in result.output
    assert len(standin.chat_requests()) == 1


# --------------------------------------------------------------------------- settings and limits


def test_settings_precedence_flags_env_secrets() -> None:
    secrets = {"openai": {"api_key": "sk-from-secrets-000000", "base_url": "http://s:1/v1", "model": "sm"}}
    env = {"OPENAI_API_KEY": "sk-from-env-00000000", "CLUSTERQC_MODEL": "em"}

    cfg = resolve_endpoint(model="flag-model", environ=env, secrets=secrets)
    assert (cfg.model, cfg.base_url, cfg.api_key, cfg.key_source) == (
        "flag-model", "http://s:1/v1", "sk-from-env-00000000", "$OPENAI_API_KEY")
    only_secrets = resolve_endpoint(environ={}, secrets=secrets)
    assert (only_secrets.model, only_secrets.api_key) == ("sm", "sk-from-secrets-000000")
    nothing = resolve_endpoint(environ={}, secrets=None)
    assert not nothing.configured and nothing.model == "gpt-4o-mini"
    assert resolve_endpoint(environ={"MY_KEY": "k1234"}, api_key_env="MY_KEY").api_key == "k1234"
    typed = resolve_endpoint(api_key="sk-typed-0000000000", environ=env)
    assert typed.api_key == "sk-typed-0000000000" and typed.key_source == "the page"


def test_key_never_in_repr_or_description() -> None:
    cfg = EndpointConfig(api_key=KEY, key_source="$OPENAI_API_KEY")
    assert KEY not in repr(cfg) and KEY not in cfg.describe()
    assert redact(f"bad key {KEY}!", KEY) == "bad key ***!"
    assert "0123456789abcdef" not in redact("Incorrect API key provided: sk-proj-0123456789abcdefXYZ")


@pytest.mark.parametrize(
    "settings, problem",
    [({"base_url": "localhost:8000"}, "http(s)://"), ({"timeout": 0}, "timeout"),
     ({"temperature": 3}, "temperature"), ({"model": " "}, "model"), ({"rpm": -1}, "requests per minute")],
)
def test_bad_settings_rejected(settings: dict, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        EndpointConfig(**settings)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limiter_requests_per_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, clock=clock, sleep=clock.sleep)  # 1 a second, a burst of 10
    for _ in range(10):
        assert limiter.acquire() == 0
    assert limiter.acquire() == pytest.approx(1.0)
    assert clock.now == pytest.approx(1.0)


def test_rate_limiter_tokens_per_minute_and_settle() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)  # 100 a second, a burst of 1,000
    assert limiter.acquire(1000) == 0
    limiter.settle(estimated=1000, actual=1500)  # the answer was longer than estimated: 500 owed
    assert limiter.acquire(100) == pytest.approx(6.0)  # 500 owed + 100 at 100 tokens a second


def test_rate_limit_spaces_requests_seen_by_server(standin: StandIn, store: Store) -> None:
    judge = judge_for(standin, rpm=30)  # one every 2 s after a burst of 5
    result = run_batch(store, judge, concurrency=6)

    assert result.progress.proposed == 6
    seen = sorted(r.received_at for r in standin.chat_requests())
    assert seen[5] - seen[0] >= 1.9  # the sixth waited for the bucket (a lower bound, not a speed)


def test_fatal_judge_error_from_any_judge_stops_the_runner(store: Store) -> None:
    class Broken:
        name, prompt_version = "broken", "v1"

        def judge(self, cluster):  # type: ignore[no-untyped-def]
            raise JudgeError("no licence", fatal=True)

    result = run_batch(store, Broken(), concurrency=4)
    assert result.stopped == "no licence" and result.progress.done == 1 and store.failures() == []
