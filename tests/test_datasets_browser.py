"""The dataset picker in a real headless Chromium: `streamlit run app.py` on a database with two
clusterings that share their ids; picking the other dataset shows its clusters, puts it in the
URL, and the next key press decides the cluster of that dataset."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from browser import guarded_page, require_chromium, running_app, wait_card
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()


def seed(db: Path) -> None:
    with Store(db) as store:
        for ds in ("alpha", "beta"):
            store.import_clusters(
                [Cluster(f"E_{i}", tuple(Sample(f"{ds} bicycle photo {k} of E_{i}") for k in range(5)),
                         tuple(Sample(f"{ds} harbour sketch {k}") for k in range(5)), size=10 + i)
                 for i in range(1, 4)],
                dataset=ds,
            )
            for i in range(1, 4):
                store.add_proposal(Proposal(f"E_{i}", "judge", "v1", Verdict.ACCEPTABLE, "why", dataset=ds))


def test_picking_a_dataset_in_chromium(tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    seed(db)
    with running_app(db, tmp_path / "server.log") as base, guarded_page(playwright_api) as guarded:
        page = guarded.page
        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(f"{base}/?reviewer=e2e")
        page.get_by_text("alpha bicycle photo 0 of E_1").first.wait_for(timeout=30_000)
        wait_card(page, "E_1")
        picker = page.get_by_test_id("stSelectbox").filter(has_text="Dataset")
        picker.click()
        page.get_by_role("option", name="beta").click()
        page.get_by_text("beta bicycle photo 0 of E_1").first.wait_for(timeout=30_000)
        wait_card(page, "E_1")
        assert page.get_by_text("alpha bicycle photo", exact=False).count() == 0
        assert re.search(r"[?&]dataset=beta", page.url), page.url
        shot = os.environ.get("CLUSTERQC_SCREENSHOT")
        if shot:
            page.screenshot(path=shot)
        page.keyboard.press("Escape")  # out of the picker: the keys work outside form fields
        page.keyboard.press("a")
        page.get_by_text("beta bicycle photo 0 of E_2").first.wait_for(timeout=30_000)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with Store(db) as store:
                rows = [(d.dataset, d.cluster_id, d.reviewer) for d in store.decisions()]
            if rows:
                break
            time.sleep(0.1)
        assert rows == [("beta", "E_1", "e2e")]
        assert guarded.dialogs == [] and guarded.outside == [], guarded.outside
