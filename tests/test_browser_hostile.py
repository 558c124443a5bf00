"""Model reasons, raw answers and notes are untrusted too: in a real Chromium they show as text.

The Review e2e test (tests/test_e2e_browser.py, whose server helpers this reuses) covers a
hostile caption; this one puts HTML, JavaScript, markdown images and links into what a model
wrote (a parsed reason, an unparsed raw answer) and into a colleague's decision note, and
checks that nothing of it renders, no script runs and no request leaves for another host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import guarded_page, require_chromium, running_app, wait_idle
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()

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
    with running_app(db, tmp_path / "server.log") as base:
        yield base


def test_reasons_raw_answers_and_notes_render_as_literal_text(app: str) -> None:
    with guarded_page(playwright_api) as guarded:
        page = guarded.page
        page.goto(f"{app}/?reviewer=checker&cluster=H_1")
        page.locator("code", has_text=re.compile(r"^H_1$")).first.wait_for(timeout=30_000)
        page.get_by_text(REASON, exact=True).first.wait_for(timeout=30_000)
        wait_idle(page)

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
    assert guarded.dialogs == [], guarded.dialogs
    assert guarded.outside == [], guarded.outside
