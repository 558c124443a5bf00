"""What the real-browser tests share: a Streamlit server on a free loopback port, and a
headless Debian Chromium page that refuses (and records) every request for an outside host.

Playwright's own browser download does not work here, so the tests drive /usr/bin/chromium,
which `.ci/run` installs. Without it the browser tests skip locally but fail in CI, where a
skipped end-to-end test would hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]


def require_chromium() -> Any:
    """The Playwright sync API, or a skip (a failure under CI) when the browser is missing."""
    api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(
    db: Path, log_path: Path, env: dict[str, str] | None = None, bind_flag: bool = True
) -> Iterator[str]:
    """`streamlit run app.py` from the project folder with `db`; yields the base URL.

    `bind_flag=False` leaves the listening address to .streamlit/config.toml (what a user gets).
    """
    port = free_port()
    env = {
        **(env if env is not None else os.environ),
        "CLUSTERQC_DB": str(db),
        "CLUSTERQC_DEMO": "0",
        "PYTHONUNBUFFERED": "1",  # the log is read while the server runs (tests search it)
    }
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    address = ["--server.address", "127.0.0.1"] if bind_flag else []
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [streamlit, "run", "app.py", *address, "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, proc, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()


def wait_healthy(base: str, proc: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not become healthy: {log.read_text()[-2000:]}")


@dataclass
class GuardedPage:
    """A browser page plus what it tried that it must not: outside requests and JS dialogs."""

    page: Any
    outside: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextmanager
def guarded_page(api: Any) -> Iterator[GuardedPage]:
    """A fresh headless Chromium page whose requests may only go to 127.0.0.1 / localhost."""
    with api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        guarded = GuardedPage(browser.new_page())

        def guard(route: Any) -> None:
            host = urlparse(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                guarded.outside.append(route.request.url)
                route.abort()

        guarded.page.route("**/*", guard)
        guarded.page.on("dialog", lambda d: (guarded.dialogs.append(d.message), d.dismiss()))
        try:
            yield guarded
        finally:
            browser.close()


def wait_idle(page: Any) -> None:
    """Wait until Streamlit has finished the run (its status widget goes away)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000
    )


# The Review card is complete and its keys are live: the run is over, the header, the card's
# last block and the token its key presses carry (the hidden field in that block) are of one
# card, and the URL names the cluster shown. (The status widget alone is not enough: Streamlit
# shows it only after a delay, and while a loaded machine streams the next card in, the header
# can be new while the browser still holds the previous card's token.)
_CARD_READY = """(cid) => {
  const app = document.querySelector('[data-testid=stApp]');
  const head = document.querySelector('[class*="st-key-cqc_head_"]');
  const code = head && head.querySelector('code');
  if (!app || app.dataset.testScriptState !== 'notRunning' || !code) { return false; }
  const id = code.innerText.trim();
  if (cid && id !== cid) { return false; }
  const serialOf = (el, prefix) => {
    const name = el && Array.from(el.classList).find((c) => c.startsWith(prefix));
    return name ? name.slice(prefix.length).split(/[_-]/)[0] : null;
  };
  const serial = serialOf(head, 'st-key-cqc_head_');
  const end = document.querySelector('[class*="st-key-cqc_end_"]');
  const token = document.querySelector('.st-key-cqc_token input');
  return serialOf(end, 'st-key-cqc_end_') === serial && !!token && token.value.split('-')[0] === serial
    && document.querySelectorAll('[class*="st-key-cqc_btn_"]').length > 0
    && new URL(location.href).searchParams.get('cluster') === id;
}"""


def wait_card(page: Any, cluster_id: str | None = None, timeout_ms: int = 30_000) -> str:
    """Wait until the Review card (of `cluster_id`, when given) is complete with live keys; its id."""
    page.wait_for_function(_CARD_READY, arg=cluster_id, timeout=timeout_ms)
    return page.locator('[class*="st-key-cqc_head_"] code').first.inner_text().strip()


def wait_for(condition: Any, what: str, timeout: float = 15) -> None:
    """Poll `condition` (say, a database count the page's key press should change) until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
