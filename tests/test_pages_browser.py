"""The Agreement and Few-shot pages at 1440x900 in a real headless Chromium, on the README's
two-reviewer demo (`clusterqc import --demo`, the offline judge, `examples/review_team.py`).

What a person sees, checked where AppTest cannot look: the judges table fits without a
horizontal scroll, the over-time chart's ticks are dates, "Open" goes to the cluster in the same
tab in one click, and the Few-shot page offers the offline judge's plain sentence as a reason
with its numbers in the hover text.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from browser import ROOT, guarded_page, require_chromium, running_app, wait_idle

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("pages")
    db = tmp / "demo.db"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CLUSTERQC_"))},
           "PYTHONPATH": str(ROOT), "CLUSTERQC_DB": str(db)}
    for args in (["-m", "clusterqc", "import", "--demo"], ["-m", "clusterqc", "propose", "--judge", "offline"],
                 [str(ROOT / "examples" / "review_team.py")]):
        subprocess.run([sys.executable, *args], env=env, cwd=tmp, check=True, capture_output=True)
    with running_app(db, tmp / "server.log") as base:
        yield base


def _open(page: object, url: str) -> None:
    page.set_viewport_size(VIEWPORT)
    page.goto(url)
    page.locator("h1").first.wait_for(timeout=60_000)
    wait_idle(page)


def test_agreement_page_reads_at_1440x900(server: str) -> None:
    with guarded_page(playwright_api) as guarded:
        page = guarded.page
        _open(page, f"{server}/agreement?reviewer=alice")
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        # The judges table: every column (recall included) inside the table, no sideways scroll.
        table = page.locator('[data-testid="stDataFrame"]').first
        table.wait_for(timeout=30_000)
        overflow = table.evaluate(
            "t => { const s = t.querySelector('.dvn-scroller'); return s.scrollWidth - s.clientWidth; }"
        )
        assert overflow <= 1, f"the judges table scrolls sideways by {overflow}px"
        # The over-time chart: date ticks, never hours or milliseconds.
        chart = page.locator(".js-plotly-plot").nth(2)
        chart.scroll_into_view_if_needed()
        ticks = chart.locator(".xtick text").evaluate_all("els => els.map(e => e.textContent)")
        assert ticks and all(re.fullmatch(r"[A-Z][a-z]{2} \d{2}, \d{4}", t) for t in ticks), ticks
        # Open in Review: one click, the same tab, the cluster on screen.
        link = page.get_by_role("link", name=re.compile(r"^Open Cluster_\d+$")).first
        link.scroll_into_view_if_needed()
        cluster = link.inner_text().removeprefix("Open ")
        link.click()
        page.wait_for_url(re.compile(rf"cluster={cluster}(&|$)"), timeout=30_000)
        page.locator("code", has_text=re.compile(rf"^{cluster}$")).first.wait_for(timeout=30_000)
        assert len(page.context.pages) == 1, "the link opened another tab"
        assert not guarded.outside and not guarded.dialogs


def test_fewshot_offers_plain_reasons_with_numbers_on_hover(server: str) -> None:
    with guarded_page(playwright_api) as guarded:
        page = guarded.page
        _open(page, f"{server}/fewshot?reviewer=alice")
        page.get_by_role("button", name="Suggest examples").click()
        wait_idle(page)
        field = page.locator('[data-testid="stTextInput"]').filter(
            has=page.locator("input[value^='Varied, descriptive captions']")).first
        field.wait_for(timeout=30_000)
        reason = field.locator("input").input_value()
        assert not re.search(r"\d", reason), reason
        field.locator('[data-testid="stTooltipIcon"]').hover()
        tip = page.locator('[data-testid="stTooltipContent"]').first
        tip.wait_for(timeout=10_000)
        assert "Offline score" in tip.inner_text() and "lexical diversity" in tip.inner_text()
        assert not guarded.outside and not guarded.dialogs
