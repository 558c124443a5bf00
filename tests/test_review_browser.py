"""The Review page in a real headless Chromium at 1440x900: one screen, keys that never misfire,
focus that comes back, and a stale proposal that cannot change what Accept records.

Each test starts `streamlit run app.py` on 127.0.0.1 with its own database (tests/browser.py)
and drives the page with the keyboard as a curator does; the database is checked row by row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser import guarded_page, require_chromium, running_app, wait_card, wait_for
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

pytestmark = pytest.mark.e2e
playwright_api = require_chromium()

N = 12
LONG = ("a very long caption that goes on about the red bicycle, the wall it leans on, the weather, "
        "the street, the shop window behind it and the photographer's camera settings " * 3)
REASON = "Most captions describe the pictured bicycle in plain words; two are file names."


def cid(i: int) -> str:
    return f"R_{i:02d}"


def seed(db: Path) -> dict[str, int]:
    """N clusters of 10 captions (every third one long, every caption naming its cluster)."""
    clusters = []
    for i in range(1, N + 1):
        texts = [f"{cid(i)} caption {k}: " + (LONG if k % 3 == 0 else "a red bicycle by a wall") for k in range(10)]
        clusters.append(Cluster(cid(i), tuple(map(Sample, texts[:5])), tuple(map(Sample, texts[5:])), size=50 + i))
    with Store(db) as store:
        store.import_clusters(clusters)
        verdicts = (Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE)
        return {c.id: store.add_proposal(Proposal(c.id, "e2e-judge", "v1", verdicts[i % 2], REASON))
                for i, c in enumerate(clusters)}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, int]]]:
    db = tmp_path / "review.db"
    ids = seed(db)
    with running_app(db, tmp_path / "server.log") as base:
        yield base, db, ids


@pytest.fixture
def page(server: tuple[str, Path, dict[str, int]]) -> Iterator[Any]:
    base = server[0]
    with guarded_page(playwright_api) as guarded:
        p = guarded.page
        p.set_viewport_size({"width": 1440, "height": 900})
        p.goto(f"{base}/?reviewer=kim")
        settle(p)
        yield p
        assert guarded.dialogs == [] and guarded.outside == []


def settle(p: Any) -> str:
    """Wait until a card is fully on screen with live keys and the run is over; the cluster id shown."""
    wait_card(p)
    p.wait_for_timeout(150)
    return wait_card(p)


def shown(p: Any) -> str:
    return p.locator("[class*=\"st-key-cqc_head_\"] code").first.inner_text().strip()


def status_lines(p: Any) -> list[str]:
    """The page's one-line messages (saved, ignored, errors)."""
    texts = p.locator("[data-testid='stMain'] [data-testid='stText'], [data-testid='stAlert']").all_inner_texts()
    return [t for t in texts if t.startswith(("✓", "⚠")) or "rror" in t]


def decisions(db: Path) -> list[tuple[Any, ...]]:
    with Store(db) as store:
        return [(d.cluster_id, d.verdict.value if d.verdict else None, d.action, d.proposal_id, d.note)
                for d in store.decisions()]


def inside_viewport(p: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    size = p.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] \
        and box["x"] + box["width"] <= size["width"]


# --------------------------------------------------------------------------- one screen


@pytest.mark.parametrize("width,height", [(1440, 900), (1280, 800)])
def test_whole_cluster_on_one_screen(page: Any, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(300)
    assert shown(page) == cid(1)
    captions = page.locator(".st-key-cqc_samples .cqc-cap")
    assert captions.count() == 10
    for k in range(10):
        caption = captions.nth(k)
        assert caption.inner_text().startswith(f"{k + 1}. {cid(1)} caption {k}:")
        assert inside_viewport(page, caption), (k, caption.bounding_box())
    reason = page.locator("[class*=\"st-key-cqc_proposals_\"]").get_by_text(REASON, exact=True)
    assert inside_viewport(page, reason)
    for name in ("Accept: Acceptable", "Override: Unacceptable", "Skip", "Undo"):
        assert inside_viewport(page, page.get_by_role("button", name=re.compile("^" + name)).first), name
    # A long caption is clamped on the card, and a click opens it.
    long_caption = captions.nth(0)
    closed = long_caption.bounding_box()["height"]
    long_caption.click()
    page.wait_for_timeout(100)
    assert long_caption.bounding_box()["height"] > closed * 1.5


def test_key_map_and_scroll_to_top(page: Any, server: tuple[str, Path, dict[str, int]]) -> None:
    page.keyboard.press("Shift+Slash")
    keymap = page.locator("#cqc-keymap")
    assert keymap.is_visible() and "Override" in keymap.inner_text()
    page.keyboard.press("Escape")
    assert not keymap.is_visible()
    page.mouse.wheel(0, 2000)
    page.wait_for_timeout(200)
    page.keyboard.press("s")
    wait_for(lambda: shown(page) == cid(2), "the next cluster")
    settle(page)
    top = page.evaluate("() => Math.max(window.scrollY, ...Array.from(document.querySelectorAll("
                        "'[data-testid=stMain], [data-testid=stAppViewContainer]')).map(e => e.scrollTop))")
    assert top == 0


# --------------------------------------------------------------------------- keys that never misfire


@pytest.mark.parametrize("gap_ms", [30, 60, 100])
def test_double_presses_never_duplicate_nor_reshow(page: Any, server: tuple[str, Path, dict[str, int]],
                                                   gap_ms: int) -> None:
    db = server[1]
    # Record every cluster id the card shows, frame by frame, and whether its captions belong to it.
    page.evaluate("""() => {
      window.__seen = []; window.__mixed = [];
      const tick = () => {
        const head = document.querySelector('[class*=\"st-key-cqc_head_\"] code');
        const id = head ? head.innerText.trim() : null;
        if (id && window.__seen[window.__seen.length - 1] !== id) window.__seen.push(id);
        document.querySelectorAll('.st-key-cqc_samples .cqc-cap').forEach(t => {
          if (!t.checkVisibility({visibilityProperty: true, opacityProperty: true})) return;
          const m = t.textContent.match(/R_\\d\\d/);
          if (id && m && m[0] !== id) window.__mixed.push(id + ' over ' + m[0]);
        });
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }""")
    lines = []
    for _ in range(3):
        before = shown(page)
        page.keyboard.press("a")
        page.wait_for_timeout(gap_ms)
        page.keyboard.press("a")
        settle(page)
        page.wait_for_timeout(300)
        lines.append((before, status_lines(page), len(decisions(db))))
    rows = decisions(db)
    decided = [r[0] for r in rows if r[2] == "decide"]
    assert 3 <= len(decided) <= 6, lines
    assert len(decided) == len(set(decided)), rows  # never two decisions for one cluster
    assert shown(page) not in decided  # the card on screen is not one already decided
    seen = page.evaluate("() => window.__seen")
    assert len(seen) == len(set(seen)), seen  # no cluster came back on screen
    assert page.evaluate("() => window.__mixed") == []  # never old samples under a new header
    # What was recorded is what each card's Accept said (the seeded proposal of that cluster).
    with Store(db) as store:
        for cluster_id, verdict, _, proposal_id, _ in rows:
            proposal = store.get_proposal(proposal_id)
            assert proposal.cluster_id == cluster_id and proposal.verdict.value == verdict


# --------------------------------------------------------------------------- focus


def test_note_escape_then_a_records_exactly_that_note(page: Any, server: tuple[str, Path, dict[str, int]]) -> None:
    db = server[1]
    note = page.get_by_placeholder(re.compile("^note"))
    note.click()
    page.keyboard.type("listings, not photos")
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    wait_for(lambda: len(decisions(db)) == 1, "one decision")
    settle(page)
    assert decisions(db) == [(cid(1), "Acceptable", "decide", server[2][cid(1)], "listings, not photos")]
    assert shown(page) == cid(2)
    assert note.input_value() == ""  # the next cluster starts with an empty note


def test_sidebar_controls_then_escape_then_keys_work(page: Any, server: tuple[str, Path, dict[str, int]]) -> None:
    db = server[1]
    sidebar = page.locator("[data-testid='stSidebar']")
    # A selectbox: choose a sort, Escape, then A decides the cluster on screen.
    sidebar.locator("[data-testid='stSelectbox']").nth(2).click()  # after the dataset picker and the queue
    page.get_by_role("option", name="Size (largest first)").click()
    settle(page)
    first = shown(page)
    assert first == cid(N)  # the largest
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    wait_for(lambda: len(decisions(db)) == 1, "a decision after the selectbox")
    assert decisions(db)[0][0] == first
    settle(page)
    # The Blind-mode toggle: click, Escape, then 1 decides (blind mode offers 1 and 2).
    sidebar.get_by_text("Blind mode").click()
    settle(page)
    page.keyboard.press("Escape")
    second = shown(page)
    page.keyboard.press("1")
    wait_for(lambda: len(decisions(db)) == 2, "a decision after the toggle")
    assert decisions(db)[1][:2] == (second, "Acceptable")
    settle(page)
    # A text field in the sidebar: type, Escape, and the keys work again.
    sidebar.get_by_placeholder("text in any caption").click()
    page.keyboard.type("caption")
    page.keyboard.press("Escape")
    settle(page)
    third = shown(page)
    page.keyboard.press("2")
    wait_for(lambda: len(decisions(db)) == 3, "a decision after the search field")
    assert decisions(db)[2][:2] == (third, "Unacceptable")


# --------------------------------------------------------------------------- stale proposals


def test_newer_proposal_cannot_change_what_accept_records(page: Any, server: tuple[str, Path, dict[str, int]]) -> None:
    base, db, ids = server
    assert shown(page) == cid(1)
    assert page.get_by_role("button", name=re.compile("^Accept: Acceptable")).count() == 1
    with Store(db) as store:  # a batch run lands a newer proposal while the curator reads
        newer = store.add_proposal(Proposal(cid(1), "gpt-batch", "v2", Verdict.UNACCEPTABLE, "file names"))
    assert newer is not None and newer > ids[cid(1)]
    page.keyboard.press("a")
    wait_for(lambda: len(decisions(db)) == 1, "one decision")
    settle(page)
    assert decisions(db) == [(cid(1), "Acceptable", "decide", ids[cid(1)], "")]
    with Store(db) as store:
        assert store.decisions()[0].agrees is True
