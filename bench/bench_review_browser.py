"""Key press to the next cluster fully shown, in headless Chromium: the Review page vs a bare page.

The bare page is the framework's floor: a Streamlit script with one `st.button(shortcut="A")`
whose callback advances a counter shown in an `st.code`. The Review page is `app.py` on a
database of N clusters (1,000 and 100,000; seeded as bench_review.py does: one proposal each,
two colleagues have decided the first half). Each sample is one press of A measured inside
the page: from the keydown event (performance.now(), capture phase) to the first DOM state in
which the new card is complete (the header shows another cluster, the card's end marker
carries the header's serial, all 10 captions are there and none is hidden), checked by a
MutationObserver, so it is the time the curator waits, not a polling interval. The check
reads `textContent`, never `innerText`: innerText forces a layout on every mutation, which
would charge the page with work the instrument adds (more for the page with more elements).

A second reference, the "floor card" (FLOOR_PAGE), is the smallest card with six shortcut
buttons, a note field and ten captions, drawn the way the Review page draws its card: the
share of the gap that no Review page built from Streamlit's own buttons can close.

The pages take turns press by press (bare, floor, 1k, 100k, bare, ...), so load from other processes
on this shared machine hits all alike; medians over the repeats, ratio against the bare page.

Run: /work/venv/bin/python bench/bench_review_browser.py [--sizes 1000 100000] [--repeats 40]
Writes the numbers to the `## Review in the browser` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_review import seed  # noqa: E402
from browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Review in the browser"
TARGET_RATIO = 1.5

BARE_PAGE = '''
import streamlit as st

st.session_state.setdefault("n", 0)


def advance() -> None:
    st.session_state.n += 1


st.code(f"Item_{st.session_state.n}", language=None)
st.button("Next", key="next", shortcut="A", on_click=advance)
'''

# A second reference: the smallest card with what a review card cannot do without (six
# shortcut buttons, the note field, ten captions in one escaped HTML element, the serial-tagged
# header and end block the measurement waits for), in a fragment, as the Review page draws it.
# It says how much of the gap to the bare page is the framework's price for six keys.
FLOOR_PAGE = '''
import html
import streamlit as st

st.session_state.setdefault("n", 0)


def advance() -> None:
    st.session_state.n += 1


@st.fragment
def card() -> None:
    n = st.session_state.n
    with st.container(key="cqc_card"):
        with st.container(key=f"cqc_head_{n}"):
            st.code(f"Cluster_{n}", language=None)
        with st.container(key="cqc_actions", horizontal=True):
            for action, key in (("accept", "A"), ("override", "O"), ("acceptable", "1"),
                                ("unacceptable", "2"), ("skip", "S"), ("undo", "U")):
                st.button(action, key=f"cqc_btn_{action}", shortcut=key, on_click=advance)
            st.text_input("Note", key="note", label_visibility="collapsed")
        with st.container(key="cqc_samples"):
            st.html("".join(f\'<div class="cqc-cap">{html.escape(f"{i + 1}. photo {i}, cluster {n}")}</div>\'
                            for i in range(10)))
        with st.container(key=f"cqc_end_{n}"):
            st.text("end")


card()
'''

ARM = """(kind) => {
  window.__t0 = null; window.__t1 = null;
  const head = () => kind === 'bare' ? document.querySelector('[data-testid=stCode] code')
                                     : document.querySelector('[class*="st-key-cqc_head_"] code');
  const before = head() ? head().textContent.trim() : null;
  const serialOf = (el, p) => { const c = el && Array.from(el.classList).find(x => x.startsWith(p));
                                return c ? c.slice(p.length).split('_')[0] : null; };
  const done = () => {
    const h = head();
    if (!h || h.textContent.trim() === before) return false;
    if (kind === 'bare') return true;
    const hs = serialOf(document.querySelector('[class*="st-key-cqc_head_"]'), 'st-key-cqc_head_');
    const es = serialOf(document.querySelector('[class*="st-key-cqc_end_"]'), 'st-key-cqc_end_');
    const samples = document.querySelector('.st-key-cqc_samples');
    if (hs !== es || !samples || samples.classList.contains('cqc-other-card')) return false;
    // The captions: Streamlit text elements before, the card's own `.cqc-cap` lines now.
    const texts = Array.from(samples.querySelectorAll('.cqc-cap, [data-testid=stText]')).filter(t => /^\d+\. /.test(t.textContent));
    const id = h.textContent.trim();
    const num = id.split('_')[1];
    return texts.length === 10 && Array.from(texts).every(t => t.textContent.endsWith('cluster ' + num)
                                                              || t.textContent.endsWith('of ' + num));
  };
  document.addEventListener('keydown', () => { window.__t0 = performance.now(); }, {capture: true, once: true});
  const obs = new MutationObserver(() => {
    if (window.__t0 !== null && window.__t1 === null && done()) { window.__t1 = performance.now(); obs.disconnect(); }
  });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def start_server(script: Path, db: Path | None, log: Path) -> tuple[Any, str]:
    """`streamlit run` on a free loopback port; returns (process, base URL)."""
    import shutil
    import subprocess

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLUSTERQC_DEMO": "0", "PYTHONUNBUFFERED": "1"}
    if db is not None:
        env["CLUSTERQC_DB"] = str(db)
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    proc = subprocess.Popen(
        [streamlit, "run", str(script), "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=script.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc, log)
    return proc, base


def settle(page: Any) -> None:
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=stApp]');"
        " return a && a.dataset.testScriptState === 'notRunning'; }", timeout=60_000)
    page.wait_for_timeout(250)


def one_press(page: Any, kind: str) -> float:
    """Milliseconds from the keydown of A to the next item/cluster fully shown."""
    settle(page)
    page.evaluate(ARM, kind)
    page.keyboard.press("a")
    page.wait_for_function("() => window.__t1 !== null", timeout=60_000)
    return float(page.evaluate("() => window.__t1 - window.__t0"))


def run(sizes: list[int], repeats: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench_review_browser_"))
    bare = tmp / "bare.py"
    bare.write_text(BARE_PAGE)
    floor = tmp / "floor.py"
    floor.write_text(FLOOR_PAGE)
    seeding = {}
    for n in sizes:
        seeding[n] = seed(tmp / f"review_{n}.db", n)
        print(f"seeded {n:,} clusters in {seeding[n]:.0f} s", flush=True)
    samples: dict[str, list[float]] = {"bare": [], "floor": [], **{str(n): [] for n in sizes}}
    with sync_playwright() as pw, ExitStack() as stack:
        servers = {"bare": start_server(bare, None, tmp / "bare.log"), "floor": start_server(floor, None, tmp / "floor.log")}
        for n in sizes:
            servers[str(n)] = start_server(ROOT / "app.py", tmp / f"review_{n}.db", tmp / f"review_{n}.log")
        for proc, _ in servers.values():
            stack.callback(proc.terminate)
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        pages = {}
        for name, (_, base) in servers.items():
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(base + ("/" if name == "bare" else "/?reviewer=bench"))
            page.get_by_role("button").first.wait_for(timeout=60_000)
            for _ in range(2):  # warm-up: caches, first decision, fonts
                one_press(page, "bare" if name == "bare" else "review")
            pages[name] = page
        for i in range(repeats):
            for name, page in pages.items():
                samples[name].append(one_press(page, "bare" if name == "bare" else "review"))
            if (i + 1) % 10 == 0:
                print(f"{i + 1}/{repeats} rounds", flush=True)
    return {"samples": samples, "seeding": seeding, "load": os.getloadavg()[0]}


def summarize(result: dict[str, Any], sizes: list[int], repeats: int) -> str:
    samples = result["samples"]
    bare = statistics.median(samples["bare"])
    lines = [
        SECTION,
        "",
        "Key press (A) to the next cluster fully shown, in headless Chromium at 1440x900, measured",
        "inside the page from the keydown to the first DOM state with the complete new card (all 10",
        "captions of the new cluster, nothing of the previous one visible). The baseline is a bare",
        "Streamlit page with one `st.button(shortcut=\"A\")` that advances a counter: the framework's",
        f"floor. The pages take turns press by press; {repeats} presses each after two warm-up presses.",
        "The floor card is the smallest card with the Review page's six shortcut buttons, its note",
        "field and ten captions in one HTML block: what six native keys cost on their own.",
        "",
        f"Command: `/work/venv/bin/python bench/bench_review_browser.py --sizes {' '.join(map(str, sizes))}"
        f" --repeats {repeats}`",
        "",
        "| page | median ms | p90 ms | min ms | ratio to bare |",
        "|---|---:|---:|---:|---:|",
        _row("bare page (one shortcut button)", samples["bare"], bare),
        _row("floor card (six shortcut buttons, note, one HTML block)", samples["floor"], bare),
    ]
    verdicts = []
    for n in sizes:
        values = samples[str(n)]
        lines.append(_row(f"Review, {n:,} clusters", values, bare))
        ratio = statistics.median(values) / bare
        verdicts.append(f"{n:,}: {ratio:.2f}")
    ok = all(statistics.median(samples[str(n)]) / bare <= TARGET_RATIO for n in sizes)
    lines += [
        "",
        f"Result: ratio to the bare page {'; '.join(verdicts)} (target <= {TARGET_RATIO}) - {'PASS' if ok else 'FAIL'}."
        f" 1-minute load average at the end: {result['load']:.1f} on {os.cpu_count()} cores"
        " (other processes share the machine; the ratio is what the turn-taking protects).",
        "",
    ]
    return "\n".join(lines)


def _row(name: str, values: list[float], bare: float) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    med = statistics.median(values)
    return f"| {name} | {med:.0f} | {p90:.0f} | {ordered[0]:.0f} | {med / bare:.2f} |"


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("\n" + text[nxt + 1:] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.sizes, args.repeats)
    section = summarize(result, args.sizes, args.repeats)
    print(section)
    print(f"({time.perf_counter() - started:.0f} s)")
    if not args.no_write:
        write_results(section)


if __name__ == "__main__":
    main()
