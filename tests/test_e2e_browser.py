"""End to end in a real headless Chromium: `streamlit run app.py`, reviewed with the keyboard only.

Starts the app on 127.0.0.1 on a free port with a temporary database, opens `/?reviewer=e2e`,
reviews five clusters with A, O, S and U, and checks the exact rows the database holds. It
also checks that an HTML/markdown caption shows as literal text, that no alert fires, and that
the page asks nothing of any host but 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)> **bold** [link](http://example.com)"
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
# Verdicts the test judge proposes for E_1..E_6.
PROPOSED = {
    "E_1": Verdict.ACCEPTABLE,
    "E_2": Verdict.UNACCEPTABLE,
    "E_3": Verdict.ACCEPTABLE,
    "E_4": Verdict.UNACCEPTABLE,
    "E_5": Verdict.ACCEPTABLE,
    "E_6": Verdict.UNACCEPTABLE,
}

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(db: Path) -> dict[str, int]:
    """Six clusters, E_1 carrying the hostile caption; returns each cluster's proposal id."""
    clusters = []
    for i in range(1, 7):
        first = XSS if i == 1 else f"a red bicycle leaning on a wall, photo {i}"
        closest = (Sample(first),) + tuple(Sample(f"bicycle photo {k} of E_{i}") for k in range(4))
        furthest = tuple(Sample(f"harbour sketch {k} of E_{i}") for k in range(5))
        clusters.append(Cluster(f"E_{i}", closest, furthest, size=100 + i))
    with Store(db) as store:
        store.import_clusters(clusters)
        return {
            cid: store.add_proposal(Proposal(cid, "e2e-judge", "v1", verdict, f"reason for {cid}"))
            for cid, verdict in PROPOSED.items()
        }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, int]]]:
    db = tmp_path / "e2e.db"
    proposal_ids = seed(db)
    port = free_port()
    env = {**os.environ, "CLUSTERQC_DB": str(db), "CLUSTERQC_DEMO": "0"}
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [streamlit, "run", "app.py", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc, tmp_path / "server.log")
        yield base, db, proposal_ids
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
        log.close()


def _wait_healthy(base: str, proc: subprocess.Popen[Any], log: Path) -> None:
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


def db_rows(db: Path) -> list[tuple[Any, ...]]:
    with Store(db) as store:
        return [(d.cluster_id, d.reviewer, d.verdict.value if d.verdict else None, d.action, d.proposal_id,
                 d.agrees, d.reverts) for d in store.decisions()]


def test_keyboard_review_in_chromium(server: tuple[str, Path, dict[str, int]]) -> None:
    base, db, pid = server
    outside: list[str] = []
    dialogs: list[str] = []
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def guard(route: Any) -> None:
            host = urlparse(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", guard)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{base}/?reviewer=e2e")

        def on_screen(cid: str) -> None:
            page.locator("code", has_text=re.compile(rf"^{cid}$")).first.wait_for(timeout=30_000)
            page.get_by_role("button", name=re.compile("Skip")).first.wait_for(timeout=30_000)
            _wait_idle(page)

        on_screen("E_1")
        # The hostile caption is shown as the literal text, nothing of it rendered.
        assert page.get_by_text(f"1. {XSS}", exact=True).count() == 1
        assert page.locator("img[src='x']").count() == 0
        assert page.locator("a[href='http://example.com']").count() == 0
        assert page.locator("strong", has_text="bold").count() == 0

        steps = [("a", "E_2"), ("o", "E_3"), ("s", "E_4"), ("a", "E_5"), ("u", "E_4"), ("o", "E_5"),
                 ("a", "E_6")]
        expected_counts = [1, 2, 2, 3, 4, 5, 6]
        for (key, next_id), count in zip(steps, expected_counts):
            page.keyboard.press(key)
            on_screen(next_id)
            _wait_for(lambda: len(db_rows(db)) == count, f"{count} decisions after {key!r}")
        assert page.url.endswith("cluster=E_6") and "reviewer=e2e" in page.url
        browser.close()

    A, U = Verdict.ACCEPTABLE.value, Verdict.UNACCEPTABLE.value
    rows = db_rows(db)
    with Store(db) as store:
        undone_id = store.decisions()[2].id  # E_4's first decision, which U reverted
    assert rows == [
        ("E_1", "e2e", A, "decide", pid["E_1"], True, None),
        ("E_2", "e2e", A, "decide", pid["E_2"], False, None),
        ("E_4", "e2e", U, "decide", pid["E_4"], True, None),
        ("E_4", "e2e", None, "undo", None, None, undone_id),
        ("E_4", "e2e", A, "decide", pid["E_4"], False, None),
        ("E_5", "e2e", A, "decide", pid["E_5"], True, None),
    ]
    assert dialogs == []
    assert outside == [], outside


def _wait_idle(page: Any) -> None:
    """Wait until Streamlit has finished the run (its status widget goes away)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000
    )


def _wait_for(condition: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
