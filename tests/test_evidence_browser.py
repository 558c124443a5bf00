"""The card's CLIP evidence in a real headless Chromium: text, chart and sidebar, nothing fetched outside.

The pool is the demo clusters with DataComp-small's real CLIP scores (tests/evidence_pool.py),
its profile recorded, so the card compares with the pool and the sidebar shows the baseline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import guarded_page, require_chromium, running_app, wait_idle
from clusterqc.evidence import card_evidence, pool_view
from clusterqc.ingest import import_files
from clusterqc.model import Verdict
from clusterqc.pool_profile import record_pool_profile
from clusterqc.store import Store
from evidence_pool import build

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    clusters, assignments = build(tmp_path)
    db = tmp_path / "evidence.db"
    with Store(db) as store:
        import_files(store, [clusters])
        record_pool_profile(store, assignments)
        store.decide("Cluster_7", "ann", Verdict.ACCEPTABLE)
    with running_app(db, tmp_path / "server.log") as base:
        yield base, db


def test_card_shows_clip_evidence_in_chromium(server: tuple[str, Path], tmp_path: Path) -> None:
    base, db = server
    with Store(db) as store:
        ev = card_evidence(store.get_cluster("Cluster_4"), pool_view(store), store.pool_cluster("Cluster_4"))
    assert ev.clip is not None and re.fullmatch(r"CLIP \d+\.\d", ev.clip)
    with guarded_page(playwright_api) as guarded:
        page = guarded.page
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(f"{base}/?reviewer=checker&cluster=Cluster_4")
        page.locator("code", has_text=re.compile(r"^Cluster_4$")).first.wait_for(timeout=30_000)
        page.get_by_text(" · ".join(ev.facts[:2]), exact=True).wait_for(timeout=30_000)
        wait_idle(page)
        for n, score in ev.sample_scores:  # each score is the tag beside its own caption
            assert page.locator(".cqc-sample").nth(n - 1).locator(".cqc-tag", has_text=score).count() == 1
        assert page.get_by_text(" · ".join(ev.facts[2:]), exact=True).count() == 1
        # The plotly chart drew its two boxes (an SVG with the row names).
        chart = page.locator("[data-testid='stPlotlyChart']")
        chart.first.wait_for(timeout=30_000)
        assert chart.locator("text", has_text="cluster").count() >= 1
        assert chart.locator("text", has_text="pool").count() >= 1
        assert page.get_by_text(re.compile(r"^Subset so far: 1 cluster, ")).count() == 1
        assert page.get_by_text(re.compile(r"^CLIP-30% baseline: 1,761 samples \(30\.0% of the pool\)$")).count() == 1
        page.screenshot(path=str(tmp_path / "evidence.png"))
        assert guarded.outside == [] and guarded.dialogs == []
