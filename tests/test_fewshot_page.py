"""The Few-shot page (and the Review page's example control) through Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clusterqc import fewshot
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE
XSS = "<img src=x onerror=alert(1)> **bold**"


@pytest.fixture
def db(app_db: Path) -> Path:
    """Eight clusters decided by ann: C_1-C_4 overridden to Unacceptable, C_5-C_8 accepted."""
    path = app_db
    with Store(path) as store:
        store.import_clusters([
            Cluster(f"C_{i}", tuple(Sample(f"{XSS} {word} {i}.{k}") for k in range(5)),
                    tuple(Sample(f"{word} far {i}.{k}") for k in range(5)))
            for i, word in zip(range(1, 9), ["img", "dsc", "jpg", "png", "barn", "boat", "tree", "lake"])
        ])
        for i in range(1, 9):
            pid = store.add_proposal(Proposal(f"C_{i}", "offline", "v0", A, f"model reason {i}"))
            store.decide(f"C_{i}", "ann", U if i <= 4 else A, proposal_id=pid,
                         note=f"file names {i}" if i <= 4 else "")
    return path


def fewshot_page(reviewer: str = "ann") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = reviewer
    at.run()
    at.switch_page("views/fewshot.py")
    at.run()
    assert not at.exception, at.exception
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_suggest_edit_create_activate_and_diff(db: Path) -> None:
    at = ok(fewshot_page())
    assert any("8 reviewed clusters with an agreed verdict · 4 overrides" in t.value for t in at.main.text)
    at.number_input(key="cqc_fs_k").set_value(4)
    at.button(key="cqc_fs_suggest").click()
    ok(at.run())
    chosen = at.multiselect(key="cqc_fs_chosen").value
    assert len(chosen) == 4
    with Store(db) as store:
        picks = [c.cluster_id for c in fewshot.suggest(store, 4)]
    assert list(chosen) == picks
    # Overrides first: both Unacceptable picks are overrides; the reasons start as offered.
    for cid in chosen:
        offered = f"file names {cid[2:]}" if int(cid[2:]) <= 4 else f"model reason {cid[2:]}"
        assert at.text_input(key=f"cqc_fs_reason_{cid}").value == offered
    first = chosen[0]
    at.text_input(key=f"cqc_fs_reason_{first}").set_value("Edited reason for the model.")
    at.text_input(key="cqc_fs_name").set_value("curated")
    at.button(key="cqc_fs_create").click()
    ok(at.run())
    assert any("Created curated" in s.value for s in at.success)
    with Store(db) as store:
        row = store.get_prompt("curated")
        assert [e["cluster_id"] for e in row["examples"]] == list(chosen)
        assert row["examples"][0]["reason"] == "Edited reason for the model."
        assert {e["cluster_id"] for e in store.examples()} == set(chosen)

    at.selectbox(key="cqc_fs_preview").set_value(row["version"])
    ok(at.run())
    at.button(key="cqc_fs_activate").click()
    ok(at.run())
    with Store(db) as store:
        assert fewshot.active_version(store) == row["version"]
    diff = [c.value for c in at.main.code if c.language == "diff"]
    assert diff and "+Reason: Edited reason for the model." in diff[0]
    # Captions are inert: the XSS text appears only inside code/text elements, never as markdown.
    assert not any("<img" in m.value for m in at.main.markdown)


def test_evaluate_with_the_offline_judge_shows_the_table(db: Path) -> None:
    with Store(db) as store:
        fewshot.create_prompt(store, "two", ["C_1", "C_5"])
    at = ok(fewshot_page())
    at.selectbox(key="cqc_fs_eval_target").set_value(fewshot.get_prompt(Store(db), "two")["version"])
    at.button(key="cqc_fs_evaluate").click()
    ok(at.run())
    frame = next(d.value for d in at.main.dataframe if "kappa" in d.value.columns)
    assert list(frame["prompt"]) == ["two", "seed"]
    assert list(frame["n"]) == [6, 6]  # 8 reviewed minus the 2 examples
    assert any("does not read the prompt" in i.value for i in at.info)


def test_guideline_change_queues_old_decisions(db: Path) -> None:
    at = ok(fewshot_page())
    at.text_area(key="cqc_fs_guideline").set_value("Drop clusters of file names.")
    at.button(key="cqc_fs_guideline_save").click()
    ok(at.run())
    at.button(key="cqc_fs_queue").click()
    ok(at.run())
    with Store(db) as store:
        assert len(store.pending_rechecks()) == 8
        assert fewshot.current_guideline_text(store) == "Drop clusters of file names."


def test_review_page_example_control(db: Path) -> None:
    """The widget the Review page embeds, run on its own page script."""
    script = (
        "from clusterqc.store import Store\n"
        "from clusterqc.ui.fewshot import mark_control\n"
        f"mark_control(Store({str(db)!r}), 'C_6', 'ann')\n"
        f"mark_control(Store({str(db)!r}), 'C_2', 'ann')\n"
    )
    at = AppTest.from_string(script, default_timeout=30).run()
    ok(at)
    assert at.text_area(key="cqc_fs_reason_C_6").value == "model reason 6"  # accepted: the model's reason
    assert at.text_area(key="cqc_fs_reason_C_2").value == "file names 2"  # overridden: the reviewer's note
    at.text_area(key="cqc_fs_reason_C_2").set_value("")
    at.button(key="cqc_fs_mark_C_2").click()
    at.run()
    assert any("needs a reason" in e.value for e in at.error)
    at.button(key="cqc_fs_mark_C_6").click()
    ok(at.run())
    with Store(db) as store:
        assert [(e["cluster_id"], e["reason"]) for e in store.examples()] == [("C_6", "model reason 6")]
    at.button(key="cqc_fs_unmark_C_6").click()
    ok(at.run())
    with Store(db) as store:
        assert store.examples() == []


def test_review_page_embeds_the_example_control(db: Path) -> None:
    """On the real Review page, a decided cluster opened by link can be marked as an example."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = "ann"
    at.query_params["cluster"] = "C_3"
    ok(at.run())
    assert at.text_area(key="cqc_fs_reason_C_3").value == "file names 3"
    at.button(key="cqc_fs_mark_C_3").click()
    ok(at.run())
    with Store(db) as store:
        assert [(e["cluster_id"], e["reason"]) for e in store.examples()] == [("C_3", "file names 3")]


def test_second_look_queue_on_the_review_page(db: Path) -> None:
    """After the guidelines change and old decisions are queued, the recheck filter serves them."""
    with Store(db) as store:
        fewshot.set_guideline(store, "Drop clusters of file names.")
        fewshot.queue_stale(store)
        assert store.queue_count("bob", "recheck") == 8
        store.decide("C_1", "bob", U)
        assert store.queue_count("bob", "recheck") == 7, "a new decision answers the second look"


def test_offline_reasons_are_prefilled_as_sentences_with_the_numbers_on_hover(app_db: Path) -> None:
    """An accepted offline proposal offers its plain sentence as the example's reason (what the
    next prompt teaches); the metrics behind it are only the field's hover text."""
    from clusterqc.judges.offline import OfflineJudge

    judge = OfflineJudge()
    clusters = [
        Cluster("C_1", tuple(Sample(f"Harbour at dawn with fishing boats, view {w}") for w in "abcde"),
                tuple(Sample(f"Old town square in the snow, {w} side") for w in "abcde")),
        Cluster("C_2", tuple(Sample(f"IMG_{1000 + k}.JPG") for k in range(5)),
                tuple(Sample(f"DSC0{k}{k}.jpg") for k in range(5))),
    ]
    with Store(app_db) as store:
        store.import_clusters(clusters)
        for c in clusters:
            proposal = judge.judge(c)
            pid = store.add_proposal(proposal)
            store.decide(c.id, "ann", proposal.verdict, proposal_id=pid)
        sentences = {c.id: judge.judge(c).reason for c in clusters}
    at = ok(fewshot_page())
    at.button(key="cqc_fs_suggest").click()
    ok(at.run())
    assert sorted(at.multiselect(key="cqc_fs_chosen").value) == ["C_1", "C_2"]
    for cid, sentence in sentences.items():
        field = at.text_input(key=f"cqc_fs_reason_{cid}")
        assert field.value == sentence and not any(ch.isdigit() for ch in sentence)
        assert "Offline score" in field.help and "lexical diversity" in field.help
