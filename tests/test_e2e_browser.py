"""End to end in a real headless Chromium: `streamlit run app.py`, reviewed with the keyboard only.

Starts the app on 127.0.0.1 on a free port with a temporary database, opens `/?reviewer=e2e`,
reviews five clusters with A, O, S and U, and checks the exact rows the database holds. It
also checks that an HTML/markdown caption shows as literal text, that no alert fires, and that
the page asks nothing of any host but 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser import guarded_page, require_chromium, running_app, wait_card, wait_for
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()

XSS = "<img src=x onerror=alert(1)> **bold** [link](http://example.com)"
# Verdicts the test judge proposes for E_1..E_6.
PROPOSED = {
    "E_1": Verdict.ACCEPTABLE,
    "E_2": Verdict.UNACCEPTABLE,
    "E_3": Verdict.ACCEPTABLE,
    "E_4": Verdict.UNACCEPTABLE,
    "E_5": Verdict.ACCEPTABLE,
    "E_6": Verdict.UNACCEPTABLE,
}

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
    with running_app(db, tmp_path / "server.log") as base:
        yield base, db, proposal_ids


def db_rows(db: Path) -> list[tuple[Any, ...]]:
    with Store(db) as store:
        return [(d.cluster_id, d.reviewer, d.verdict.value if d.verdict else None, d.action, d.proposal_id,
                 d.agrees, d.reverts) for d in store.decisions()]


def test_keyboard_review_in_chromium(server: tuple[str, Path, dict[str, int]]) -> None:
    base, db, pid = server
    with guarded_page(playwright_api) as guarded:
        page = guarded.page
        page.goto(f"{base}/?reviewer=e2e")

        def on_screen(cid: str) -> None:
            wait_card(page, cid)

        on_screen("E_1")
        # The hostile caption is shown as the literal text, nothing of it rendered.
        assert page.locator(".st-key-cqc_samples").get_by_text(f"1. {XSS}", exact=True).count() == 1
        assert page.locator("img[src='x']").count() == 0
        assert page.locator("a[href='http://example.com']").count() == 0
        assert page.locator("strong", has_text="bold").count() == 0

        steps = [("a", "E_2"), ("o", "E_3"), ("s", "E_4"), ("a", "E_5"), ("u", "E_4"), ("o", "E_5"),
                 ("a", "E_6")]
        expected_counts = [1, 2, 2, 3, 4, 5, 6]
        for (key, next_id), count in zip(steps, expected_counts):
            page.keyboard.press(key)
            on_screen(next_id)
            wait_for(lambda: len(db_rows(db)) == count, f"{count} decisions after {key!r}")
        assert page.url.endswith("cluster=E_6") and "reviewer=e2e" in page.url

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
    assert guarded.dialogs == []
    assert guarded.outside == [], guarded.outside

