"""The Propose page in a real Chromium: an endpoint's error text shows as literal text.

An adversarial endpoint answered 401 with a body holding a bold phishing link and a markdown
image; the page rendered it as Markdown, so the browser showed the link and fetched the image
from the server. The stand-in plays that endpoint here and records every GET it receives, so
a fetched image is seen, not guessed; the guarded page refuses any request to another host.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from browser import guarded_page, require_chromium, running_app, wait_idle
from clusterqc.store import Store
from conftest import marked_clusters
from openai_standin import Reply, StandIn

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()

KEY = "sk-browser-0123456789abcdef"


def test_a_401_body_with_markdown_is_shown_literally_and_fetches_nothing(standin: StandIn, tmp_path: Path) -> None:
    pixel = f"http://127.0.0.1:{standin.port}/pixel.png"
    phish = f"http://127.0.0.1:{standin.port}/phish"
    body = f"**Your key expired** [sign in again]({phish}) ![status]({pixel}) <img src='{pixel}?html'>"
    standin.handler = lambda req: Reply(status=401, error_message=body)
    db = tmp_path / "app.db"
    with Store(db) as store:
        store.import_clusters(marked_clusters(3))
    env_extra = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": standin.base_url, "CLUSTERQC_MODEL": "m"}
    with running_app(db, tmp_path / "server.log", env={**os.environ, **env_extra}) as base, \
            guarded_page(playwright_api) as guarded:
        page = guarded.page
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(f"{base}/propose")
        run = page.get_by_role("button", name="Run", exact=True)
        run.wait_for(timeout=60_000)
        wait_idle(page)
        run.click()
        page.get_by_text("Stopped before the end", exact=False).wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(500)  # time for any image the page would load
        page.get_by_text("Stopped before the end", exact=False).scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "propose_hostile_401.png"))  # to look at

        # The server's words are on the page as the characters it sent ...
        assert page.get_by_text(re.compile(re.escape(f"![status]({pixel})"))).count() >= 1
        assert page.get_by_text(re.compile(re.escape("**Your key expired**"))).count() >= 1
        # ... and none of it became a link, an image or bold text.
        assert page.locator(f"a[href^='{phish}']").count() == 0
        assert page.locator("img[src*='pixel.png']").count() == 0
        assert page.locator("strong", has_text="Your key expired").count() == 0
        assert KEY not in page.content()

    fetched = [r.path for r in standin.requests if r.method == "GET"]
    assert not any("pixel.png" in path or "phish" in path for path in fetched), fetched
    assert guarded.outside == [] and guarded.dialogs == []
    assert len(standin.chat_requests()) == 1  # the 401 stopped the batch after one request
