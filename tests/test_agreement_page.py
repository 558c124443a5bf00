"""The Agreement page in AppTest, through app.py's navigation, on real temporary databases."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGE = "views/agreement.py"
A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE
ODD_ID = "C 9&x=<b>#?/ü"
XSS = "<img src=x onerror=alert(1)> **bold** [link](http://example.com)"


@pytest.fixture
def db(app_db: Path) -> Path:
    return app_db


def open_page(reviewer: str = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = reviewer
    at.run()
    at.switch_page(PAGE)
    return at.run()


def fill(db: Path) -> None:
    """Two judges, two reviewers, one double-reviewed disagreement, one unparsed answer."""
    with Store(db) as store:
        ids = [f"C_{i}" for i in range(1, 7)] + [ODD_ID]
        store.import_clusters([Cluster(c, (Sample(f"cap {c}"),), (Sample(f"far {c}"),)) for c in ids])
        model = {"C_1": A, "C_2": U, "C_3": A, "C_4": U, "C_5": None, "C_6": A, ODD_ID: A}
        for c, v in model.items():
            store.add_proposal(Proposal(c, "gpt", "v1", v, XSS if c == ODD_ID else "why", raw="?"))
        store.add_proposal(Proposal("C_1", "offline", "offline-v1", U, "short"))
        human = {"C_1": A, "C_2": U, "C_3": U, "C_4": U, "C_5": A, ODD_ID: U}
        for c, v in human.items():
            store.decide(c, "alice", v)
        store.decide("C_1", "bob", A)
        store.decide("C_3", "bob", A)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_empty_database_says_what_is_missing(db: Path) -> None:
    at = open_page()
    no_exception(at)
    assert at.title[0].value == "Agreement"
    assert any("No reviewed clusters yet" in i.value for i in at.main.info)


def test_reviews_without_proposals(db: Path) -> None:
    with Store(db) as store:
        store.import_clusters([Cluster("C_1", (Sample("a"),), (Sample("b"),))])
        store.decide("C_1", "alice", A)
    at = open_page()
    no_exception(at)
    infos = " ".join(i.value for i in at.main.info)
    assert "No proposals yet" in infos and "No cluster has two reviews yet" in infos


def test_page_with_data_renders_every_section(db: Path) -> None:
    fill(db)
    at = open_page()
    no_exception(at)
    headers = [h.value for h in at.main.subheader]
    assert headers == ["Judges against the reviewers", "Model agreement over time", "Each reviewer against the model",
                       "Between reviewers", "Disagreements"]
    summary = at.main.dataframe[0].value.set_index(["judge", "prompt_version"])
    gpt = summary.loc[("gpt", "v1")]
    assert (gpt["proposals"], gpt["reviewed"], gpt["unparsed"], gpt["compared"]) == (7, 6, 1, 5)
    charts = [c.proto.spec for c in at.main.get("plotly_chart")]
    assert len(charts) == 5  # kappa, confusion, over time, per reviewer, reviewer x reviewer
    # C_1 (A, A) and C_3 (U, A) reviewed twice: alpha = 1 - (4 - 1) * 2 / (2 * 3 * 1) = 0.
    assert [m.value for m in at.main.metric] == ["2", "0.00"]


def test_disagreements_link_to_the_review_page_with_escaped_ids(db: Path) -> None:
    fill(db)
    at = open_page(reviewer="alice")
    table = at.main.dataframe[-1].value
    assert sorted(table["cluster_id"]) == sorted([ODD_ID, "C_1"])  # C_1: the offline judge
    row = table[table["cluster_id"] == ODD_ID].iloc[0]
    assert row["model_reason"] == XSS  # shown as a table cell: inert text
    # One click in the same tab: a page link (not a new-tab table link) per disagreeing cluster.
    assert "review" not in table.columns
    links = {parse_qs(link.proto.query_string)["cluster"][0]: link for link in at.main.get("page_link")}
    assert sorted(links) == sorted([ODD_ID, "C_1"])
    odd = links[ODD_ID]
    assert parse_qs(odd.proto.query_string) == {"cluster": [ODD_ID], "dataset": ["default"], "reviewer": ["alice"]}
    # The label is Markdown: every punctuation mark of the id is escaped, so it shows literally.
    assert odd.proto.label == "Open C 9\\&x\\=\\<b\\>\\#?/ü"
    assert len({link.proto.page_script_hash for link in links.values()}) == 1


def test_open_in_review_lands_on_the_cluster(db: Path) -> None:
    """Following a link's target (the Review page with its query) shows that cluster."""
    fill(db)
    at = open_page(reviewer="alice")
    link = next(link for link in at.main.get("page_link") if "C_1" in link.proto.query_string)
    review = AppTest.from_file(APP, default_timeout=60)
    for key, values in parse_qs(link.proto.query_string).items():
        review.query_params[key] = values[0]
    review.run()
    no_exception(review)
    assert review.query_params["cluster"] in ("C_1", ["C_1"])
    assert any(c.value == "C_1" for c in review.main.get("code")), "the Review page is not on C_1"


def test_judges_table_has_short_headings_and_one_interval_column(db: Path) -> None:
    fill(db)
    at = open_page()
    summary = at.main.dataframe[0].value
    assert list(summary.columns) == ["judge", "prompt_version", "proposals", "reviewed", "unparsed", "compared",
                                     "agreement", "kappa", "kappa_ci", "precision_unacceptable",
                                     "recall_unacceptable", "note"]
    config = at.main.dataframe[0].proto.columns
    assert '"recall U"' in config and '"95% CI"' in config and '"precision U"' in config


def test_captions_and_reasons_never_reach_markdown(db: Path) -> None:
    fill(db)
    at = open_page()
    rendered = [m.value for m in at.main.markdown] + [c.value for c in at.main.caption]
    assert not any("onerror" in r or "**bold**" in r for r in rendered)


def test_confusion_table_follows_the_chosen_judge(db: Path) -> None:
    fill(db)
    at = open_page()
    box = at.main.selectbox(key="agreement_judge")
    assert box.options == ["gpt @ v1", "offline @ offline-v1"]
    box.set_value("offline @ offline-v1").run()
    no_exception(at)
    spec = [c.proto.spec for c in at.main.get("plotly_chart")][1]
    assert "offline @ offline-v1: 1 compared" in spec
