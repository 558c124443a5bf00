"""The Review app driven through Streamlit's AppTest on real temporary SQLite files.

Each test builds its own database, runs `app.py` as a reviewer would (query params, sidebar
widgets, the action buttons), and checks the decisions table after each step.
"""

from __future__ import annotations

import multiprocessing as mp
import re
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from card_text import plain_text
from clusterqc import bootstrap
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.review import Reviewer, ReviewSession, SessionState, clean_name, load_view, resolve_reviewer
from clusterqc.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
XSS = "<img src=x onerror=alert(1)> **bold** [link](http://example.com)"


# --------------------------------------------------------------------------- helpers


def make_cluster(cid: str, word: str = "bicycle", size: int | None = 10, url: str | None = None) -> Cluster:
    closest = tuple(Sample(f"{word} photo {k} of {cid}", url=url) for k in range(5))
    furthest = tuple(Sample(f"{word} sketch {k} of {cid}") for k in range(5))
    return Cluster(cid, closest, furthest, size=size, dataset="test")


def propose(store: Store, cid: str, verdict: Verdict | None, judge: str = "offline", reason: str = "") -> int:
    raw = f"Classification: {verdict.value}" if verdict else "I cannot tell."
    return store.add_proposal(
        Proposal(cid, judge, "v1", verdict, reason or f"{judge} thinks so", raw=raw,
                 parse_error=None if verdict else "no Classification line")
    )


@pytest.fixture
def db(app_db: Path) -> Path:
    return app_db


@pytest.fixture
def four(db: Path) -> Path:
    """C_1 model Acceptable, C_2 model Unacceptable, C_3 unparsed only, C_4 no proposal."""
    with Store(db) as store:
        store.import_clusters([make_cluster(f"C_{i}", size=10 * i) for i in range(1, 5)])
        propose(store, "C_1", Verdict.ACCEPTABLE)
        propose(store, "C_2", Verdict.UNACCEPTABLE)
        propose(store, "C_3", None)
    return db


def app(reviewer: str | None = "alice", **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer is not None:
        at.query_params["reviewer"] = reviewer
    at.query_params.update(params)
    return at.run()


def shown(at: AppTest) -> str | None:
    """The cluster id on screen (the first st.code block), None when there is none."""
    codes = [c.value for c in at.main.code if c.language in (None, "", "plaintext")]
    return codes[0] if codes else None


def texts(at: AppTest) -> list[str]:
    """Every text on the page: text elements, and each line of the card's escaped HTML as read."""
    return [t.value for t in at.main.text] + [line for h in at.main.get("html") for line in plain_text(h.value)]


def keys(at: AppTest) -> list[str]:
    """The action buttons on screen, without their colour (`cqc_btn_accept__<tone>`)."""
    return [b.key.split("__")[0] for b in at.main.button if b.key and b.key.startswith("cqc_btn_")]


def button(at: AppTest, action: str) -> Any:
    """The action button of the card on screen."""
    found = [b for b in at.main.button if b.key and b.key.startswith(f"cqc_btn_{action}__")]
    assert len(found) == 1, [b.key for b in at.main.button]
    return found[0]


def press(at: AppTest, action: str) -> AppTest:
    button(at, action).click()
    at.run()
    no_errors(at)
    return at


def images(at: AppTest) -> int:
    return sum(type(e).__name__ == "Image" for col in at.main.columns for e in col.children.values())


def progress_texts(at: AppTest) -> list[str]:
    """The parts of the progress line at the top of the Review page ("Mine 1 / 4", ...)."""
    line = next((t for t in texts(at) if t.startswith("Mine ")), "")
    return line.split(" · ")


def choose(at: AppTest, queue: str) -> AppTest:
    """Pick a queue filter in the sidebar (a fresh element lookup: old ones carry old state)."""
    return at.sidebar.selectbox(key="cqc_filter").set_value(queue)


def rows(db: Path) -> list[tuple[Any, ...]]:
    with Store(db) as store:
        return [(d.cluster_id, d.reviewer, d.verdict.value if d.verdict else None, d.action, d.proposal_id,
                 d.agrees, d.note) for d in store.decisions()]


def no_errors(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


# --------------------------------------------------------------------------- first start, empty states


def test_first_start_imports_demo_and_offline_proposals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fresh.db"
    monkeypatch.setenv("CLUSTERQC_DB", str(path))
    monkeypatch.delenv("CLUSTERQC_DEMO", raising=False)
    at = app()
    no_errors(at)
    with Store(path) as store:
        n = store.count_clusters()
        assert n > 0 and store.has_proposals()
        assert len(store.proposals(judge="offline")) == n
        first = store.peek_cluster()
    assert shown(at) == first
    # 1 and 2 are offered beside Accept / Override, so no key is ever dead while a proposal shows.
    assert keys(at) == ["cqc_btn_accept", "cqc_btn_override", "cqc_btn_acceptable", "cqc_btn_unacceptable",
                        "cqc_btn_skip", "cqc_btn_undo"]
    # A second start changes nothing.
    with Store(path) as store:
        assert bootstrap.ensure_started(store) == bootstrap.BootstrapResult()


def test_bootstrap_leaves_a_database_with_clusters_alone(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([make_cluster("Mine_1")])
        assert bootstrap.ensure_started(store, env={}) == bootstrap.BootstrapResult()
        assert store.cluster_ids() == ["Mine_1"] and not store.has_proposals()


def test_no_clusters_points_to_import_and_loads_demo(db: Path) -> None:
    at = app()
    no_errors(at)
    assert any("no clusters" in i.value for i in at.info)
    assert any("clusterqc import" in c.value for c in at.main.code)
    at.button(key="cqc_load_demo").click().run()
    no_errors(at)
    with Store(db) as store:
        assert store.count_clusters() > 0 and store.has_proposals()
    assert shown(at) is not None and "cqc_btn_accept" in keys(at)
    assert rows(db) == []


def test_no_proposals_offers_offline_judge_and_keys_1_2(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([make_cluster("C_1"), make_cluster("C_2")])
    at = app()
    no_errors(at)
    assert keys(at) == ["cqc_btn_acceptable", "cqc_btn_unacceptable", "cqc_btn_skip", "cqc_btn_undo"]
    assert button(at, "unacceptable").proto.shortcut == "2"
    press(at, "unacceptable")
    assert rows(db) == [("C_1", "alice", "Unacceptable", "decide", None, None, "")]
    assert shown(at) == "C_2"
    at.button(key="cqc_run_offline").click().run()
    no_errors(at)
    with Store(db) as store:
        assert len(store.proposals(judge="offline")) == 2
    assert "cqc_btn_accept" in keys(at)


def test_everything_reviewed_links_to_export(four: Path) -> None:
    at = app()
    for _ in range(4):
        press(at, "accept" if "cqc_btn_accept" in keys(at) else "acceptable")
    no_errors(at)
    assert shown(at) is None
    assert any("Everything is reviewed" in s.value for s in at.success)
    assert [r[0] for r in rows(four)] == ["C_1", "C_2", "C_3", "C_4"]
    assert at.query_params.get("cluster") in (None, "")
    links = [e.proto for e in at.main.get("page_link")]
    assert [(p.page, p.label) for p in links] == [("export", "Export the labels")]


# --------------------------------------------------------------------------- reviewers


def test_no_decision_without_a_reviewer(four: Path) -> None:
    at = app(reviewer=None)
    no_errors(at)
    assert shown(at) == "C_1"  # read-only preview
    assert all(b.disabled for b in at.main.button if b.key and b.key.startswith("cqc_btn_"))
    assert any("Enter your name" in w.value for w in at.warning)
    with pytest.raises(AppTestError, match="disabled"):
        press(at, "accept")
    assert rows(four) == []
    # The review logic refuses too, whatever the screen does.
    with Store(four) as store:
        with pytest.raises(PermissionError):
            ReviewSession(store, SessionState(current="C_1")).act("accept", "C_1")
        with pytest.raises(PermissionError):
            ReviewSession(store, SessionState()).act("undo", "C_1")
    at.sidebar.text_input(key="cqc_reviewer").input("  bob  ").run()
    press(at, "accept")
    assert rows(four)[0][:3] == ("C_1", "bob", "Acceptable")
    assert at.query_params["reviewer"] == "bob"


def test_login_and_allow_list(four: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1/oauth2callback", "cookie_secret": "x"}
    at.secrets["clusterqc"] = {"reviewers": ["carol@example.org"]}
    at.user = {"is_logged_in": False}
    at.query_params["reviewer"] = "mallory"  # ignored when login is configured
    at.run()
    no_errors(at)
    assert any("Log in" in w.value for w in at.warning)
    assert at.sidebar.button(key="cqc_login")
    with pytest.raises(AppTestError, match="disabled"):
        press(at, "accept")
    assert rows(four) == []
    at.user = {"is_logged_in": True, "email": "eve@example.org", "name": "Eve"}
    at.run()
    assert any("not on this project's reviewer list" in w.value for w in at.warning)
    with pytest.raises(AppTestError, match="disabled"):
        press(at, "accept")
    assert rows(four) == []
    at.user = {"is_logged_in": True, "email": "carol@example.org", "name": "Carol"}
    at.run()
    press(at, "accept")
    assert rows(four)[0][:3] == ("C_1", "carol@example.org", "Acceptable")


# --------------------------------------------------------------------------- actions


def test_accept_override_skip_undo_and_note(four: Path) -> None:
    at = app()
    no_errors(at)
    assert shown(at) == "C_1" and at.query_params["cluster"] == "C_1"
    assert [button(at, k).proto.shortcut.upper() for k in ("accept", "override", "skip", "undo")] == [
        "A", "O", "S", "U"]
    assert "Mine 0 / 4" in progress_texts(at)
    press(at, "accept")
    assert rows(four) == [("C_1", "alice", "Acceptable", "decide", 1, True, "")]
    assert shown(at) == "C_2" and at.query_params["cluster"] == "C_2"
    assert "Mine 1 / 4" in progress_texts(at)  # counted in the same rerun as the decision
    at.main.text_input(key="cqc_note").input("captions are product shots")
    press(at, "override")
    assert rows(four)[-1] == ("C_2", "alice", "Acceptable", "decide", 2, False, "captions are product shots")
    assert at.main.text_input(key="cqc_note").value == ""
    assert shown(at) == "C_3"  # only an unparsed proposal: verdict keys
    assert keys(at)[:2] == ["cqc_btn_acceptable", "cqc_btn_unacceptable"]
    press(at, "skip")
    assert len(rows(four)) == 2 and shown(at) == "C_4"
    press(at, "undo")
    assert rows(four)[-1] == ("C_2", "alice", None, "undo", None, None, "")
    assert shown(at) == "C_2"  # the undone cluster comes back
    with Store(four) as store:
        assert [d.reverts for d in store.decisions()][-1] == 2
        assert [(lab["cluster_id"], lab["verdict"]) for lab in store.labels()] == [("C_1", "Acceptable")]
    press(at, "undo")
    assert rows(four)[-1] == ("C_1", "alice", None, "undo", None, None, "")
    assert shown(at) == "C_1"
    press(at, "undo")  # nothing left: says so, appends nothing
    assert len(rows(four)) == 4
    assert any("Nothing to undo" in t for t in texts(at))


def test_skipped_clusters_come_back_on_revisit(four: Path) -> None:
    at = app()
    for expected in ("C_1", "C_2", "C_3", "C_4"):
        assert shown(at) == expected
        press(at, "skip")
    assert shown(at) is None and rows(four) == []
    at.button(key="cqc_revisit").click().run()
    assert shown(at) == "C_1"


def test_blind_mode_hides_proposals_but_records_them(four: Path) -> None:
    at = app()
    at.sidebar.toggle(key="cqc_blind").set_value(True).run()
    no_errors(at)
    assert shown(at) == "C_1"
    assert not any("offline thinks so" in t for t in texts(at))
    assert any("Blind mode" in i.value for i in at.info)
    assert keys(at)[:2] == ["cqc_btn_acceptable", "cqc_btn_unacceptable"]
    assert button(at, "acceptable").proto.shortcut == "1"
    press(at, "unacceptable")
    assert rows(four) == [("C_1", "alice", "Unacceptable", "decide", 1, False, "")]
    # Once decided, the proposal shows: jump back to it.
    at.sidebar.text_input(key="cqc_jump").input("C_1").run()
    assert shown(at) == "C_1" and any("offline thinks so" in t for t in texts(at))


def test_proposals_shown_with_judge_version_and_raw_unparsed(four: Path) -> None:
    with Store(four) as store:
        propose(store, "C_3", Verdict.UNACCEPTABLE, judge="gpt-test", reason="mostly file names")
    at = app(cluster="C_3")
    no_errors(at)
    assert shown(at) == "C_3"
    assert "offline · prompt v1" in texts(at)
    assert "gpt-test · prompt v1 (Accept / Override answer this one)" in texts(at)
    assert "I cannot tell." in [c.value for c in at.main.code]
    press(at, "accept")
    assert rows(four)[-1][:6] == ("C_3", "alice", "Unacceptable", "decide", 4, True)


# --------------------------------------------------------------------------- queue


def test_filters(four: Path) -> None:
    at = app()
    for name, expected in [("model_acceptable", "C_1"), ("model_unacceptable", "C_2"), ("unparsed", "C_3"),
                           ("disagreements", None), ("mine", None), ("all", "C_1")]:
        choose(at, name).run()
        no_errors(at)
        assert shown(at) == expected, name
    choose(at, "model_unacceptable").run()
    press(at, "override")  # alice says Acceptable to C_2: a disagreement
    assert shown(at) is None
    choose(at, "disagreements").run()
    assert shown(at) == "C_2"
    choose(at, "mine").run()
    assert shown(at) == "C_2"
    press(at, "accept")  # browse filters re-decide and walk on
    assert rows(four)[-1][:4] == ("C_2", "alice", "Unacceptable", "decide")
    assert shown(at) is None
    choose(at, "all").run()
    seen = []
    for _ in range(4):
        seen.append(shown(at))
        press(at, "skip")
    assert seen == ["C_1", "C_2", "C_3", "C_4"] and shown(at) is None


def test_search_sort_and_uncertainty(four: Path) -> None:
    with Store(four) as store:
        store.import_clusters([make_cluster("C_5", word="lighthouse", size=5)])
        propose(store, "C_4", Verdict.ACCEPTABLE, judge="a")
        propose(store, "C_4", Verdict.UNACCEPTABLE, judge="b")
    at = app()
    at.sidebar.text_input(key="cqc_search").input("lighthouse").run()
    assert shown(at) == "C_5"
    at.sidebar.text_input(key="cqc_search").input("100%_nothing").run()
    assert shown(at) is None
    at.sidebar.text_input(key="cqc_search").input("").run()
    at.sidebar.selectbox(key="cqc_sort").set_value("size").run()
    assert shown(at) == "C_4"  # size 40, the largest
    at.sidebar.selectbox(key="cqc_sort").set_value("uncertainty").run()
    assert shown(at) == "C_4"  # two judges that disagree
    press(at, "skip")
    assert shown(at) == "C_1"  # the rest tie on uncertainty: id order
    at.sidebar.selectbox(key="cqc_sort").set_value("size").run()
    assert shown(at) == "C_3"  # a skip outlasts a change of sort: C_4 stays out until revisited


def test_jump_and_deep_link(four: Path) -> None:
    at = app(cluster="C_3")
    assert shown(at) == "C_3"
    press(at, "acceptable")
    assert rows(four) == [("C_3", "alice", "Acceptable", "decide", None, None, "")]
    assert shown(at) == "C_1"
    at.sidebar.text_input(key="cqc_jump").input("C_4").run()
    assert shown(at) == "C_4" and at.query_params["cluster"] == "C_4"
    at.sidebar.text_input(key="cqc_jump").input("Nope_9").run()
    assert any("No cluster with that id" in e.value for e in at.error)
    assert "Nope_9" in texts(at) and shown(at) == "C_4"
    assert not at.exception


def test_reviews_wanted_and_holds(four: Path) -> None:
    alice, bob = app("alice"), app("bob")
    assert shown(alice) == "C_1" and shown(bob) == "C_2"  # C_1 is held for alice
    press(alice, "accept")
    bob.run()
    assert shown(bob) == "C_2"
    press(bob, "accept")
    assert shown(bob) == "C_4"  # C_3 is now held for alice
    # Two reviews wanted: bob may now take C_1, which alice has decided; alice never gets it again.
    bob.sidebar.select_slider(key="cqc_wanted").set_value(2).run()
    with Store(four) as store:
        assert store.get_setting("reviews_wanted") == "2"
    assert shown(bob) == "C_1"
    press(bob, "accept")
    assert [(r[0], r[1]) for r in rows(four)] == [("C_1", "alice"), ("C_2", "bob"), ("C_1", "bob")]
    alice.run()
    assert alice.sidebar.select_slider(key="cqc_wanted").value == 2
    assert shown(alice) != "C_1"


def test_captions_render_as_literal_text(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([Cluster("X_1", (Sample(XSS),) * 5, (Sample("plain"),) * 5)])
        store.add_proposal(Proposal("X_1", "m<b>", "v1", None, XSS, raw=XSS, parse_error="no verdict"))
    at = app()
    no_errors(at)
    assert f"1. {XSS}" in texts(at)
    assert XSS in texts(at)  # the reason, as text
    assert XSS in [c.value for c in at.main.code]  # the raw answer, as code
    assert not any(XSS in m.value or "onerror" in m.value for m in at.main.markdown)


def test_db_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "not-a-db.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    monkeypatch.setenv("CLUSTERQC_DB", str(bad))
    at = app()
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert "not-a-db.db" in at.error[0].value


# --------------------------------------------------------------------------- two reviewers at once


def _reviewer_process(db: str, name: str, n: int, out: Any) -> None:
    """Run in a child process: one AppTest session accepting `n` clusters as fast as it can."""
    import os

    os.environ["CLUSTERQC_DB"] = db
    os.environ["CLUSTERQC_DEMO"] = "0"
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = name
    at.run()
    problems, done = [], []
    for _ in range(n):
        done.append(shown(at))
        button(at, "accept").click().run()
        problems += [str(e.value) for e in at.exception] + [e.value for e in at.error]
    out.put((name, done, problems))


def test_two_reviewers_at_once_lose_nothing(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([make_cluster(f"P_{i}") for i in range(40)])
        for i in range(40):
            propose(store, f"P_{i}", Verdict.ACCEPTABLE)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reviewer_process, args=(str(db), name, 10, queue)) for name in ("ann", "ben")]
    for p in procs:
        p.start()
    results = {name: (done, problems) for name, done, problems in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert results["ann"][1] == [] and results["ben"][1] == []
    decided = rows(db)
    assert len(decided) == 20
    for name in ("ann", "ben"):
        assert [r[0] for r in decided if r[1] == name] == results[name][0]
    assert len({r[0] for r in decided}) == 20  # one review wanted: nobody was handed a colleague's cluster


# --------------------------------------------------------------------------- naming rules (no UI)


def test_reviewer_naming_rules() -> None:
    assert clean_name("  Ann\u200b \t Lee\n") == "Ann Lee"
    assert clean_name("x" * 100) == "x" * 64
    assert clean_name(None) == ""
    plain = {"login_configured": False, "user": {}, "allowed": None}
    assert resolve_reviewer(**plain, field_value="ann", url_value="bob") == Reviewer("ann", "field")
    assert resolve_reviewer(**plain, field_value=" ", url_value="bob") == Reviewer("bob", "url")
    assert resolve_reviewer(**plain).name is None
    user = {"is_logged_in": True, "email": "Ann@Example.org", "name": "Ann"}
    login = resolve_reviewer(login_configured=True, user=user, allowed=["ann@example.org"], field_value="mallory")
    assert login == Reviewer("Ann@Example.org", "login")
    assert resolve_reviewer(login_configured=True, user=user, allowed=["bob@example.org"]).name is None
    assert resolve_reviewer(login_configured=True, user={"is_logged_in": False}, allowed=None).name is None


def test_thumbnails_toggle_for_samples_with_images(db: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "thumb.png"
    Image.new("RGB", (4, 4), "red").save(png)
    with Store(db) as store:
        store.import_clusters([make_cluster("I_1", url=str(png)), make_cluster("I_2")])
    at = app()
    assert shown(at) == "I_1" and images(at) == 0
    at.main.toggle(key="cqc_thumbs").set_value(True).run()
    no_errors(at)
    assert images(at) == 5  # the five closest samples carry the image path
    press(at, "acceptable")
    assert shown(at) == "I_2" and not [t for t in at.main.toggle if t.key == "cqc_thumbs"]


# --------------------------------------------------------------------------- issue 10: tokens, skips, bulk


def test_a_press_applies_once_and_only_to_the_card_it_was_made_on(four: Path) -> None:
    """The card token: a second press with the same token, or one from an earlier card, writes nothing."""
    with Store(four) as store:
        session = ReviewSession(store, SessionState())
        session.configure("alice", session.state.settings)
        view = load_view(store, session.current(), "alice")
        first = session.show(view, blind=False)
        assert session.show(view, blind=False) is first  # a rerun of the same card keeps its token
        session.press("accept", first.token)
        session.press("accept", first.token)  # a double press
        assert [(d.cluster_id, d.verdict) for d in store.decisions()] == [("C_1", Verdict.ACCEPTABLE)]
        assert session.state.ignored == ""  # the first press went through in this run
        session.state.applied = False  # (the page resets this when it draws the next card)
        session.press("override", first.token)
        assert session.state.ignored.startswith("Ignored: pressed before the next cluster appeared")
        second = session.show(load_view(store, session.current(), "alice"), blind=False)
        assert second.cluster_id == "C_2" and second.token != first.token
        # A newer proposal after the render: Accept still records what the card showed.
        newer = propose(store, "C_2", Verdict.ACCEPTABLE, judge="gpt-new")
        session.press("accept", second.token)
        last = store.decisions()[-1]
        assert (last.cluster_id, last.verdict, last.proposal_id) == ("C_2", Verdict.UNACCEPTABLE, 2)
        assert newer != last.proposal_id
        assert len(store.decisions()) == 2


def test_keys_1_and_2_work_while_a_proposal_is_shown(four: Path) -> None:
    at = app()
    assert shown(at) == "C_1"
    press(at, "unacceptable")
    assert rows(four) == [("C_1", "alice", "Unacceptable", "decide", 1, False, "")]
    assert any(t.startswith("✓ Saved C_1: Unacceptable (overrides offline") for t in texts(at))


def test_reviewed_counts_this_decision_at_once(four: Path) -> None:
    at = app()
    assert "Reviewed 0 / 4" in progress_texts(at)
    press(at, "accept")
    assert "Reviewed 1 / 4" in progress_texts(at) and "Mine 1 / 4" in progress_texts(at)
    assert any(t.startswith("Mine 1 / 4 · Reviewed 1 / 4 · Today: 1 decided") for t in texts(at))


def test_skips_are_kept_per_reviewer_across_sessions(four: Path) -> None:
    at = app()
    press(at, "skip")
    press(at, "skip")
    assert shown(at) == "C_3"
    with Store(four) as store:
        assert store.skipped_clusters("alice") == ["C_1", "C_2"]
    again = app()  # a new tab (or a restart): the skips stay skipped
    assert shown(again) == "C_3"
    assert shown(app("bob")) == "C_1"  # skips are alice's, not bob's
    press(again, "acceptable")
    press(again, "acceptable")
    assert shown(again) is None
    assert any("except the 2 cluster(s) you skipped" in s.value for s in again.success)
    again.button(key="cqc_revisit").click().run()
    no_errors(again)
    assert shown(again) == "C_2"  # back in the queue (C_1 is held for bob, who has it open)
    with Store(four) as store:
        assert store.skipped_clusters("alice") == []
    press(again, "accept")
    with Store(four) as store:
        store.skip_cluster("alice", "C_2")
        store.decide("C_2", "alice", Verdict.ACCEPTABLE)
        assert store.skipped_clusters("alice") == []  # a decision ends a skip


def test_history_is_human_readable(four: Path) -> None:
    at = app()
    at.main.text_input(key="cqc_note").input("file names")
    press(at, "override")
    at.sidebar.text_input(key="cqc_jump").input("C_1").run()
    assert not [t for t in texts(at) if " · alice · " in t]  # drawn only while the expander is open
    at.session_state["cqc_x_history"] = True  # open it (AppTest has no click for expanders)
    at.run()
    lines = [t for t in texts(at) if " · alice · " in t]
    assert len(lines) == 1 and re.fullmatch(
        r"today \d\d:\d\d UTC · alice · Unacceptable · differs from the model · note: file names", lines[0])


def test_queue_controls_only_on_the_review_pages(four: Path) -> None:
    at = app()
    at.sidebar.selectbox(key="cqc_filter").set_value("all").run()
    # The dataset picker is on every page; the queue's own controls only here.
    assert [s.key for s in at.sidebar.selectbox] == ["cqc_dataset", "cqc_filter", "cqc_sort"]
    for page in ("views/fewshot.py", "views/export.py"):
        at.switch_page(page).run()
        no_errors(at)
        assert [s.key for s in at.sidebar.selectbox] == ["cqc_dataset"]
        assert not [t for t in at.sidebar.toggle if t.key == "cqc_blind"]
    at.switch_page("views/review.py").run()
    assert at.sidebar.selectbox(key="cqc_filter").value == "all"  # kept while away


def bulk_app(reviewer: str = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = reviewer
    at.run()
    at.switch_page("views/bulk.py").run()
    no_errors(at)
    return at


def bulk_rows(at: AppTest) -> list[str]:
    return [c.value for c in at.main.code]


def test_bulk_review_records_flips_and_accepts_exactly(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([make_cluster(f"B_{i}") for i in range(1, 15)])
        pids = {f"B_{i}": propose(store, f"B_{i}", Verdict.ACCEPTABLE if i % 2 else Verdict.UNACCEPTABLE)
                for i in range(1, 14)}  # B_14 has no proposal: single review only
    at = bulk_app()
    assert bulk_rows(at) == [f"B_{i}" for i in range(1, 11)]
    flips = {"B_2", "B_5"}
    for cid in flips:
        next(t for t in at.main.toggle if t.key.endswith(f"__{cid}")).set_value(True)
    at.run()
    record = next(b for b in at.main.button if b.key.startswith("cqc_bulk_record__"))
    assert record.proto.shortcut.upper() == "A" and record.label.startswith("Record this page: 8 accepted, 2 flipped")
    record.click().run()
    no_errors(at)
    expected = []
    for i in range(1, 11):
        cid = f"B_{i}"
        proposed = Verdict.ACCEPTABLE if i % 2 else Verdict.UNACCEPTABLE
        verdict = proposed.other if cid in flips else proposed
        expected.append((cid, "alice", verdict.value, "decide", pids[cid], cid not in flips, ""))
    assert rows(db) == expected  # each row exactly as single review's Accept / Override records it
    assert any(t.startswith("✓ Saved 10 decisions (2 flipped, 8 accepted)") for t in texts(at))
    # The next page: what is left with a proposal; the cluster without one is left for single review.
    assert bulk_rows(at) == ["B_11", "B_12", "B_13"]
    assert any("B_14" in t for t in texts(at))


def test_bulk_pages_of_two_reviewers_do_not_overlap(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([make_cluster(f"B_{i}") for i in range(1, 7)])
        for i in range(1, 7):
            propose(store, f"B_{i}", Verdict.ACCEPTABLE)
    alice = bulk_app("alice")
    alice.main.number_input(key="cqc_bulk_size").set_value(3).run()
    bob = bulk_app("bob")
    bob.main.number_input(key="cqc_bulk_size").set_value(3).run()
    assert bulk_rows(alice) == ["B_1", "B_2", "B_3"] and bulk_rows(bob) == ["B_4", "B_5", "B_6"]


def test_human_times_and_pace() -> None:
    from datetime import datetime, timezone

    from clusterqc.review import human_time, pace

    now = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
    assert human_time("2026-12-01T09:05:59.123456+00:00", now) == "today 09:05 UTC"
    assert human_time("2026-11-30T23:59:00+00:00", now) == "yesterday 23:59 UTC"
    assert human_time("2026-10-02T08:00:00+00:00", now) == "2026-10-02 08:00 UTC"
    assert human_time("not a time", now) == "not a time"
    assert pace(2, "2026-12-01T14:00:00+00:00", 100, now).per_hour is None  # too few to say
    p = pace(60, "2026-12-01T14:00:00+00:00", 120, now)  # 60 in the last hour
    assert round(p.per_hour) == 60 and round(p.eta_minutes) == 120
    assert p.line() == "Today: 60 decided · 60/h · 120 cluster(s) still need a review · about 2.0 h left at this pace"
    assert pace(3, "2026-12-01T14:59:50+00:00", 10, now).per_hour == 180  # at least a minute counts


def test_thumbnail_grid_says_when_an_image_cannot_be_loaded(db: Path, tmp_path: Path) -> None:
    from PIL import Image

    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    Image.new("RGB", (4, 4), "red").save(good)
    broken.write_bytes(b"not a png")
    closest = (Sample("ok", url=str(good)), Sample("bad", url=str(broken)), Sample("gone", url=str(tmp_path / "no.png")),
               Sample("ok too", url=str(good)), Sample("no url"))
    with Store(db) as store:
        store.import_clusters([Cluster("I_1", closest, tuple(Sample(f"far {k}") for k in range(5)))])
    at = app()
    at.main.toggle(key="cqc_thumbs").set_value(True).run()
    no_errors(at)
    assert images(at) == 2
    assert sum(t.startswith("image could not be loaded") for t in texts(at)) == 2
    assert len(at.main.columns) >= 10  # a grid of 5 per row, closest above furthest
