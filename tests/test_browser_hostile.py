"""Model reasons, raw answers and notes are untrusted too: in a real Chromium they show as text.

The Review e2e test (tests/test_e2e_browser.py, whose server helpers this reuses) covers a
hostile caption; this one puts HTML, JavaScript, markdown images and links into what a model
wrote (a parsed reason, an unparsed raw answer) and into a colleague's decision note, and
checks that nothing of it renders, no script runs and no request leaves for another host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

pytestmark = pytest.mark.e2e

playwright_api = pytest.importorskip("playwright.sync_api")
from test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, _wait_healthy, _wait_idle, free_port  # noqa: E402

if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

OUTSIDE = "198.51.100.7"  # TEST-NET-2: a request for it would be a leak, and never resolves
REASON = (f"<img src=x onerror=alert('reason')> ![tracker](http://{OUTSIDE}/r.png) "
          "[click me](javascript:alert('link')) <script>alert('script')</script> **loud** Unacceptable-ish")
RAW = f"<iframe src='http://{OUTSIDE}/'></iframe> <svg onload=alert('raw')> ![x](http://{OUTSIDE}/raw.png)"
CAPTION = f"![caption image](http://{OUTSIDE}/c.png) [home](http://{OUTSIDE}/) <u>under</u>"
NOTE = f"<b onmouseover=alert('note')>note</b> ![n](http://{OUTSIDE}/n.png)"


def seed(db: Path) -> None:
    closest = (Sample(CAPTION),) + tuple(Sample(f"a harbour at dusk, photo {k}") for k in range(4))
    furthest = tuple(Sample(f"a bicycle sketch {k}") for k in range(5))
    with Store(db) as store:
        store.import_clusters([Cluster("H_1", closest, furthest, size=7)])
        store.add_proposal(Proposal("H_1", "judge-a", "v1", Verdict.UNACCEPTABLE, REASON, raw=REASON))
        store.add_proposal(Proposal("H_1", "judge-b", "v1", None, REASON, raw=RAW, parse_error="no verdict found"))
        store.decide("H_1", "colleague", Verdict.ACCEPTABLE, note=NOTE)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[str]:
    db = tmp_path / "hostile.db"
    seed(db)
    port = free_port()
    env = {**os.environ, "CLUSTERQC_DB": str(db), "CLUSTERQC_DEMO": "0"}
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [streamlit, "run", "app.py", "--server.port", str(port), "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, proc, log_path)
            yield base
        finally:
            proc.terminate()
            proc.wait(10)


def test_reasons_raw_answers_and_notes_render_as_literal_text(app: str) -> None:
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
        page.goto(f"{app}/?reviewer=checker&cluster=H_1")
        page.locator("code", has_text=re.compile(r"^H_1$")).first.wait_for(timeout=30_000)
        page.get_by_text(REASON, exact=True).first.wait_for(timeout=30_000)
        _wait_idle(page)

        # Every hostile string is on the page as the literal characters ...
        assert page.get_by_text(REASON, exact=True).count() >= 2  # both proposals' reasons
        assert page.get_by_text(re.compile(re.escape(CAPTION))).count() >= 1
        assert page.locator("code", has_text="<iframe").count() >= 1  # the raw answer, as code
        # ... and nothing of it became markup.
        assert page.locator(f"img[src*='{OUTSIDE}'], img[src='x']").count() == 0
        assert page.locator(f"a[href*='{OUTSIDE}'], a[href^='javascript:']").count() == 0
        assert page.locator(f"iframe[src*='{OUTSIDE}']").count() == 0
        assert page.locator("svg[onload], [onerror], [onmouseover]").count() == 0
        assert page.locator("strong", has_text="loud").count() == 0
        assert page.locator("u", has_text="under").count() == 0
        page.mouse.move(200, 200)
        page.wait_for_timeout(500)  # give any injected handler its chance to fire
        browser.close()
    assert dialogs == [], dialogs
    assert outside == [], outside
