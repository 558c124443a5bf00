"""The app's dataset picker in AppTest (real SQLite file, app.py's navigation): two clusterings
whose ids overlap; the picker and `?dataset=` choose which one every page works on."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from card_text import plain_text
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


def clustering(word: str) -> list[Cluster]:
    return [
        Cluster(f"C_{i}", tuple(Sample(f"{word} caption {k} of C_{i}") for k in range(3)), (Sample(f"{word} far {i}"),),
                size=5 + i)
        for i in range(1, 4)
    ]


@pytest.fixture
def two(app_db: Path) -> Path:
    """Datasets `alpha` and `beta`, both C_1..C_3; each with a proposal and one decision."""
    with Store(app_db) as store:
        for ds, word in (("alpha", "alpha"), ("beta", "beta")):
            store.import_clusters(clustering(word), dataset=ds)
            for i in range(1, 4):
                store.add_proposal(Proposal(f"C_{i}", "gpt", "v1", A if i != 2 else U, "why", dataset=ds))
        store.decide("C_1", "bob", A, dataset="alpha")
        store.decide("C_1", "bob", U, dataset="beta")
    return app_db


def run_app(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"reviewer": "alice", **params})
    return at.run()


def samples(at: AppTest) -> str:
    """The card as read: the id, text elements, and the lines of its escaped HTML (the captions)."""
    html_lines = [line for h in at.main.get("html") for line in plain_text(h.value)]
    return " ".join([c.value for c in at.main.code] + [t.value for t in at.main.text] + html_lines)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_picker_switches_the_dataset_the_review_page_works_on(two: Path) -> None:
    at = ok(run_app())
    picker = at.sidebar.selectbox(key="cqc_dataset")
    assert picker.options == ["alpha", "beta"] and picker.value == "alpha"
    assert "alpha caption" in samples(at) and "beta caption" not in samples(at)
    at.sidebar.selectbox(key="cqc_dataset").set_value("beta").run()
    ok(at)
    assert at.query_params["dataset"] == ["beta"] or at.query_params["dataset"] == "beta"
    assert "beta caption" in samples(at) and "alpha caption" not in samples(at)
    accept = [b for b in at.main.button if b.key and b.key.startswith("cqc_btn_accept__")]
    assert len(accept) == 1, [b.key for b in at.main.button]
    accept[0].click().run()
    ok(at)
    with Store(two) as store:
        mine = store.decisions(reviewer="alice")
    assert [(d.dataset, d.cluster_id, d.verdict) for d in mine] == [("beta", "C_2", U)]  # C_1 has bob's review


def test_dataset_in_the_url_opens_that_dataset_and_a_bad_one_falls_back(two: Path) -> None:
    at = ok(run_app(dataset="beta", cluster="C_2"))
    assert at.sidebar.selectbox(key="cqc_dataset").value == "beta"
    assert "beta caption 0 of C_2" in samples(at)
    at = run_app(dataset="gamma")
    assert at.sidebar.selectbox(key="cqc_dataset").value == "alpha"
    assert any("No dataset named 'gamma'" in w.value for w in at.sidebar.warning)


def test_every_page_shows_the_chosen_dataset_and_agreement_side_by_side(two: Path) -> None:
    at = ok(run_app(dataset="beta"))
    for page in ("views/propose.py", "views/agreement.py", "views/fewshot.py", "views/export.py"):
        at.switch_page(page)
        ok(at.run())
        assert "Dataset: beta" in [c.value for c in at.main.caption], page
    at.switch_page("views/agreement.py")
    ok(at.run())
    at.toggle(key="agreement_all_datasets").set_value(True).run()
    ok(at)
    side = at.main.dataframe[0].value
    assert list(side.columns) == ["alpha", "beta"] and list(side.index) == ["gpt @ v1"]
