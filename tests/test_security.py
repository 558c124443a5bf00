"""Secrets and access: a planted API key must never reach the database (WAL included), logs,
exports, error messages or the page; the app binds to 127.0.0.1 and keeps XSRF protection on.

The key is planted the way users supply it (OPENAI_API_KEY), and the stand-in server does
what careless providers do: it echoes the key back inside its error messages (401, 400, 503).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterqc.judges.llm import LLMJudge
from clusterqc.model import Verdict
from clusterqc.propose import run_batch
from clusterqc.settings import resolve_endpoint
from clusterqc.store import Store
from browser import running_app
from conftest import cluster_in_prompt, marked_clusters
from openai_standin import Reply, SeenRequest, StandIn

ROOT = Path(__file__).resolve().parent.parent
PLANTED = f"sk-test-PLANTED-{secrets.token_hex(16)}"


def _echoing_server(server: StandIn) -> None:
    """Accept only the planted key; echo whatever key arrives in every error message."""

    def handler(request: SeenRequest) -> Reply | None:
        if request.api_key != PLANTED:
            return Reply(status=401, error_message=f"Incorrect API key provided: {request.api_key}.")
        cluster = cluster_in_prompt(request.prompt)
        if cluster == "Cluster_2":
            return Reply(status=400, error_message=f"context length exceeded for key {request.api_key}")
        if cluster == "Cluster_3":
            return Reply(status=503, error_message=f"overloaded (key {request.api_key})")
        return None

    server.handler = handler


def _files_under(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file())


def _assert_nowhere(folder: Path, *texts: str) -> None:
    """The key is in no file under `folder` (database, -wal, -shm, exports) nor in `texts`."""
    needle = PLANTED.encode()
    leaked = [p.name for p in _files_under(folder) if needle in p.read_bytes()]
    assert leaked == [], f"the API key reached {leaked}"
    for text in texts:
        assert PLANTED not in text and PLANTED[8:] not in text


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clusterqc", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def planted_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    return {**os.environ, "OPENAI_API_KEY": PLANTED, "OPENAI_LOG": "debug"}


def test_planted_key_reaches_no_file_log_export_or_message(
    standin: StandIn, tmp_path: Path, planted_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "secrets.db"
    # Held open to the end, so the -wal file is not checkpointed away before it is searched.
    keeper = Store(db)
    keeper.import_clusters(marked_clusters(6))
    _echoing_server(standin)

    # 1. The CLI batch, key from the environment, every log switched to debug.
    run = _cli("propose", "--db", str(db), "--judge", "llm", "--model", "m", "--base-url", standin.base_url,
               "--max-retries", "1", env=planted_env)
    assert run.returncode == 1, run.stderr  # some clusters failed: not finished
    assert "failed Cluster_2: 400" in run.stderr and "failed Cluster_3: 503" in run.stderr
    assert {r.api_key for r in standin.chat_requests()} == {PLANTED}  # it was really used

    # 2. The same in process, with every logger at DEBUG captured (the openai and httpx ones too).
    caplog.set_level(logging.DEBUG)
    config = resolve_endpoint(model="m", base_url=standin.base_url, environ=os.environ, max_retries=1)
    assert config.api_key == PLANTED
    with Store(db) as store:
        for failure in store.failures():  # ask again about the two that failed
            assert failure["error"]
        result = run_batch(store, LLMJudge(config), concurrency=2)
        errors = [e for _c, e in result.errors] + [f["error"] for f in store.failures()]
        assert len(result.errors) == 2
        store.decide("Cluster_0", "ana", Verdict.ACCEPTABLE, note="fine")
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    log_text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)

    # 3. A wrong key: the 401 path, whose message the server fills with the key it got.
    wrong = _cli("propose", "--db", str(db), "--judge", "llm", "--model", "m", "--base-url", standin.base_url,
                 "--api-key-env", "OTHER_KEY", env={**planted_env, "OTHER_KEY": PLANTED[::-1]})
    assert wrong.returncode == 1 and "401" in wrong.stderr
    assert PLANTED[::-1] not in wrong.stderr + wrong.stdout

    # 4. Exports in every format, and the CLI's own output for them.
    outputs = []
    for ext in ("csv", "jsonl", "parquet"):
        out = _cli("export", "--db", str(db), "--out", str(tmp_path / f"labels.{ext}"), "--include-unreviewed",
                   env=planted_env)
        assert out.returncode == 0, out.stderr
        outputs += [out.stdout, out.stderr]

    assert all("400" in e or "503" in e for e in errors)
    assert db.with_name(db.name + "-wal").stat().st_size > 0
    _assert_nowhere(tmp_path, run.stdout, run.stderr, wrong.stdout, wrong.stderr, log_text, *errors, *outputs)
    keeper.close()


def test_key_from_environment_is_not_shown_on_the_propose_page(
    tmp_path: Path, planted_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from clusterqc.ui import propose as propose_ui

    db = tmp_path / "page.db"
    monkeypatch.setenv("CLUSTERQC_DB", str(db))
    monkeypatch.setenv("CLUSTERQC_DEMO", "0")
    with Store(db) as store:
        store.import_clusters(marked_clusters(3))
    at = AppTest.from_file(str(ROOT / "views" / "propose.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert at.radio(key=propose_ui.K_KIND).value == "llm"  # the planted key made the LLM the default
    shown = [str(getattr(el, "value", "")) + str(getattr(el, "body", "")) for el in at.main]
    shown += [str(w.value) for w in at.text_input]
    assert any("OPENAI_API_KEY" in s for s in shown)  # the page names where the key came from ...
    assert not any(PLANTED in s or PLANTED[8:] in s for s in shown)  # ... and never the key


# --------------------------------------------------------------------------- the server


def test_config_binds_localhost_with_xsrf_on() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"].get("enableXsrfProtection", True) is True
    assert config["server"].get("enableCORS", True) is True


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def app_server(tmp_path: Path, planted_env: dict[str, str]) -> Iterator[tuple[int, Path]]:
    """`streamlit run app.py` bound by .streamlit/config.toml alone; yields its port and log."""
    log = tmp_path / "server.log"
    with running_app(tmp_path / "app.db", log, env=planted_env, bind_flag=False) as base:
        yield int(base.rsplit(":", 1)[1]), log


def test_the_server_listens_on_localhost_only_and_checks_xsrf(app_server: tuple[int, Path]) -> None:
    port, log_path = app_server
    assert _listening_addresses(port) == {"0100007F"}, "the app listens beyond 127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        assert PLANTED not in r.read().decode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
        cookies = r.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("_streamlit_xsrf=") for c in cookies), "no XSRF cookie: protection is off"
    # A state-changing request without the XSRF token is refused.
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_stcore/upload_file/session/file", data=b"x", method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403 and "XSRF" in refused.value.read().decode()
    assert PLANTED not in log_path.read_text()
