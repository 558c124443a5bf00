"""The batch runner: concurrency, resumability, cancelling, a SIGKILL mid-batch, and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.judges.llm import LLMJudge
from clusterqc.judges.offline import OfflineJudge
from clusterqc.prompt import default_template
from clusterqc.propose import Progress, make_judge, plan_run, run_batch
from clusterqc.settings import EndpointConfig
from clusterqc.store import Store
from conftest import cluster_in_prompt, marked_clusters
from openai_standin import StandIn

KEY = "sk-propose-test-000000000000"


def llm(server: StandIn, **overrides: object) -> LLMJudge:
    return LLMJudge(EndpointConfig(**{"model": "m", "base_url": server.base_url, "api_key": KEY, **overrides}))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "p.db") as s:
        s.import_clusters(marked_clusters(30))
        yield s


def test_concurrency_is_bounded_and_first_request_goes_alone(standin: StandIn, store: Store) -> None:
    standin.latency = 0.05
    result = run_batch(store, llm(standin), concurrency=5)

    assert result.progress.proposed == 30
    assert standin.max_in_flight == 5
    first, second = sorted(standin.chat_requests(), key=lambda r: r.received_at)[:2]
    assert second.received_at >= first.finished_at  # nobody else was asked before the first answer


def test_rerun_asks_nothing_twice(standin: StandIn, store: Store) -> None:
    run_batch(store, llm(standin), concurrency=4, limit=12)
    first_run = {cluster_in_prompt(r.prompt) for r in standin.chat_requests()}
    standin.reset()
    result = run_batch(store, llm(standin), concurrency=4)

    second_run = [cluster_in_prompt(r.prompt) for r in standin.chat_requests()]
    assert len(first_run) == 12 and result.progress.total == 18
    assert not first_run & set(second_run) and len(second_run) == len(set(second_run)) == 18
    assert Counter(p.cluster_id for p in store.proposals()) == Counter({f"Cluster_{i}": 1 for i in range(30)})


def test_cancel_stops_new_requests_and_keeps_answers_in_flight(standin: StandIn, store: Store) -> None:
    standin.latency = 0.05
    cancel = threading.Event()
    seen: list[int] = []

    def progress(p: Progress) -> None:
        seen.append(p.done)
        if p.done == 6:
            cancel.set()

    result = run_batch(store, llm(standin), concurrency=4, progress=progress, cancel=cancel)

    asked = len(standin.chat_requests())
    assert result.cancelled and result.stopped is None
    assert asked < 30 and len(store.proposals()) == asked  # every request sent was stored
    assert result.remaining == 30 - asked
    assert seen[:6] == [1, 2, 3, 4, 5, 6]


def test_error_in_progress_callback_still_stores_in_flight(standin: StandIn, store: Store) -> None:
    standin.latency = 0.05

    def progress(p: Progress) -> None:
        if p.done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(store, llm(standin), concurrency=4, progress=progress)
    assert len(store.proposals()) == len(standin.chat_requests()) > 3


def test_offline_judge_through_the_same_runner(store: Store) -> None:
    result = run_batch(store, make_judge("offline"), concurrency=2)
    assert result.progress.proposed == 30
    assert {p.judge for p in store.proposals()} == {"offline"}
    assert run_batch(store, OfflineJudge()).progress.total == 0  # nothing left to do


def test_plan_renders_one_prompt_and_estimates_all(store: Store) -> None:
    judge = LLMJudge(EndpointConfig(model="m", base_url="http://127.0.0.1:9/v1"))
    plan = plan_run(store, judge, limit=10)
    one = default_template().render(store.get_cluster("Cluster_0"))

    assert plan.pending == 10 and plan.example_cluster == "Cluster_0"
    assert one in (plan.example_prompt or "")
    assert 10 * len(one) // 4 < plan.estimated_tokens < 10 * (len(one) // 4 + 400)


def test_cli_dry_run_calls_nothing(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(4))
    result = CliRunner().invoke(
        cli, ["propose", "--db", str(db), "--base-url", standin.base_url, "--dry-run"],
        env={"OPENAI_API_KEY": KEY, "CLUSTERQC_DB": None},
    )
    assert result.exit_code == 0, result.output
    assert "pending:  4 clusters" in result.output and "estimate: ~" in result.output
    assert "cluster-0 photo of a red bicycle" in result.output
    assert standin.requests == [] and KEY not in result.output
    with Store(db) as s:
        assert s.proposals() == []


def test_cli_defaults_to_offline_without_endpoint(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(3))
    env = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "CLUSTERQC_DB": None}
    result = CliRunner().invoke(cli, ["propose", "--db", str(db), "--limit", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "proposed 2 of 2 clusters" in result.output and "offline" in result.output
    with Store(db) as s:
        assert len(s.proposals(judge="offline")) == 2


def test_cli_bad_base_url_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["propose", "--db", str(tmp_path / "x.db"), "--base-url", "localhost:1234"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: base URL 'localhost:1234': expected http(s)://host[:port]/v1 (e.g. http://localhost:11434/v1)"
    ]


@pytest.mark.parametrize("contents, problem", [("{not json", "x"), ('{"Cluster_999": "Classification: Acceptable"}',
                                                                     "not in the database")])
def test_import_proposals_rejects_bad_files_and_writes_nothing(tmp_path: Path, contents: str, problem: str) -> None:
    db, path = tmp_path / "i.db", tmp_path / "raw.json"
    with Store(db) as s:
        s.import_clusters(marked_clusters(2))
    path.write_text(contents)
    result = CliRunner().invoke(cli, ["import-proposals", str(path), "--judge", "gpt-3.5", "--db", str(db)])
    assert result.exit_code == 1 and result.output.startswith("error: ") and str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1
    if problem != "x":
        assert problem in result.output
    with Store(db) as s:
        assert s.proposals() == []


def test_import_proposals_raw_json_and_csv(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(3))
    raw = tmp_path / "raw.json"
    raw.write_text(
        '{"Cluster_0": "Reason: varied.\\nClassification: Acceptable",'
        ' "Cluster_1": "### Classification: **Low Value**", "Cluster_2": "no idea"}'
    )
    csv = tmp_path / "parsed.csv"
    csv.write_text("Cluster,Reason,Classification\nCluster_0,Varied,Acceptable\nCluster_1,Dupes,Unacceptable\n")

    first = CliRunner().invoke(cli, ["import-proposals", str(raw), "--judge", "gpt-3.5", "--db", str(db)])
    second = CliRunner().invoke(cli, ["import-proposals", str(csv), "--judge", "old-csv", "--db", str(db)])
    again = CliRunner().invoke(cli, ["import-proposals", str(raw), "--judge", "gpt-3.5", "--db", str(db)])

    assert first.exit_code == 0 and "imported 3 of 3 proposals" in first.output and "1 unparsed" in first.output
    assert second.exit_code == 0 and "imported 2 of 2" in second.output
    assert again.exit_code == 0 and "imported 0 of 3" in again.output
    with Store(db) as s:
        verdicts = {p.cluster_id: p.verdict and p.verdict.value for p in s.proposals(judge="gpt-3.5")}
        assert verdicts == {"Cluster_0": "Acceptable", "Cluster_1": "Unacceptable", "Cluster_2": None}
        assert len(s.proposals(judge="old-csv")) == 2


# --------------------------------------------------------------------------- SIGKILL mid-batch


def _wait_for_proposals(db: Path, at_least: int, proc: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    with Store(db) as s:
        while time.monotonic() < end and proc.poll() is None:
            if s.stats().proposals >= at_least:
                return
            time.sleep(0.01)
    raise AssertionError(f"the batch did not store {at_least} proposals (exit {proc.poll()})")


def _propose_cmd(db: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "clusterqc", "propose", "--db", str(db), "--judge", "llm", "--model", "m",
            "--base-url", url, "--concurrency", "4"]


def test_sigkill_mid_batch_then_rerun(standin: StandIn, tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(120))
    standin.latency = 0.04
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    env.pop("CLUSTERQC_DB", None)

    proc = subprocess.Popen(_propose_cmd(db, standin.base_url), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_proposals(db, 20, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Store(db) as s:
        finished = {p.cluster_id for p in s.proposals()}
    assert 20 <= len(finished) < 120, "the kill must land mid-batch"
    first_run = len(standin.chat_requests())

    rerun = subprocess.run(_propose_cmd(db, standin.base_url), env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr

    second_run = [cluster_in_prompt(r.prompt) for r in standin.chat_requests()[first_run:]]
    assert not finished & set(second_run), "a finished cluster was asked again"
    assert len(second_run) == len(set(second_run))
    with Store(db) as s:
        counts = Counter(p.cluster_id for p in s.proposals())
        assert s.integrity_check() == "ok"
    assert set(counts) == {f"Cluster_{i}" for i in range(120)} and set(counts.values()) == {1}


def test_cli_prompt_file_good_and_bad(tmp_path: Path) -> None:
    db = tmp_path / "pf.db"
    with Store(db) as s:
        s.import_clusters(marked_clusters(2))
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("Judge these.\nNear: {closest_samples}\nFar: {furthest_samples}\nClassification:")
    bad.write_text("Judge {closest_samples} and {samples}")
    env = {"OPENAI_API_KEY": None, "CLUSTERQC_DB": None}
    base = ["propose", "--db", str(db), "--judge", "llm", "--dry-run", "--prompt"]

    ok = CliRunner().invoke(cli, [*base, str(good)], env=env)
    wrong = CliRunner().invoke(cli, [*base, str(bad)], env=env)
    missing = CliRunner().invoke(cli, [*base, "nope"], env=env)

    assert ok.exit_code == 0 and 'Near: [\n  "cluster-0 photo' in ok.output
    assert wrong.exit_code == 1 and str(bad) in wrong.output and "{samples}" in wrong.output
    assert missing.exit_code == 1 and "--prompt nope" in missing.output
    assert len(wrong.output.strip().splitlines()) == len(missing.output.strip().splitlines()) == 1
