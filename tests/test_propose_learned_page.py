"""The learned judge on the Propose page, through Streamlit's AppTest on a real SQLite file.

A curator picks "learned", sees in one line whether it can train (or the one-line refusal),
runs it, and reads the cross-validated kappa with its interval and how many proposals were
stored. The page works on the sidebar's dataset.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_propose_page import finish, ok, propose_page

from clusterqc.import_decisions import import_decisions
from clusterqc.ingest import demo_path, read_files, write_clusters
from clusterqc.model import Verdict
from clusterqc.store import Store
from clusterqc.ui import propose as ui

DECISIONS = Path(__file__).resolve().parent.parent / "examples" / "demo_decisions.csv"


def demo_store(path: Path, dataset: str | None = None) -> None:
    """The bundled demo's 60 clusters (in `dataset`, or the demo's own)."""
    with Store(path) as store:
        write_clusters(store, read_files([str(demo_path())], dataset))


def learned_page(dataset: str | None = None) -> AppTest:
    return propose_page("learned", dataset, timeout=120)


def texts(at: AppTest) -> list[str]:
    return [str(t.value) for t in at.main.text]


def test_learned_trains_on_the_demo_decisions_and_shows_its_kappa(app_db: Path) -> None:
    demo_store(app_db)
    with Store(app_db) as store:
        import_decisions(store, DECISIONS, "developer")

    at = learned_page()
    assert not at.main.warning and not at.main.error
    assert texts(at)[0].startswith("Can train: 60 agreed labels (32 Acceptable, 28 Unacceptable)")
    assert any(t.startswith("0 of 60 clusters have a proposal from learned @ learned-") for t in texts(at))
    assert not at.button(key=ui.K_RUN).disabled
    assert at.number_input(key=ui.K_LIMIT).disabled and at.number_input(key=ui.K_CONCURRENCY).disabled

    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at), timeout=120)

    assert [s.value for s in at.main.success] == ["Finished."]
    shown = texts(at)
    # The same training the CLI prints for the demo (README): 5-fold kappa with its 95% interval.
    assert any("60 labels (32 Acceptable, 28 Unacceptable), 5-fold cross-validated kappa 0.69 (95% CI 0.52 to 0.86)"
               in t for t in shown), shown
    assert any(t.startswith("60 proposals stored (0 clusters already had this version)") for t in shown), shown
    assert any(t.startswith("60 of 60 clusters have a proposal from learned @ learned-") for t in shown)
    assert at.button(key=ui.K_RUN).disabled  # nothing left for this version
    with Store(app_db) as store:
        stored = store.proposals(judge="learned")
        assert len(stored) == 60 and all(p.confidence is not None for p in stored)
        assert {p.dataset for p in stored} == set(store.dataset_names())


def test_too_few_labels_is_refused_in_one_line_and_run_is_disabled(app_db: Path) -> None:
    demo_store(app_db)
    with Store(app_db) as store:
        ids = store.cluster_ids()
        # 12 labels, but only 2 Unacceptable: fewer than 3 of one verdict.
        store.decide_many("ann", [(cid, Verdict.ACCEPTABLE, "") for cid in ids[:10]]
                          + [(cid, Verdict.UNACCEPTABLE, "") for cid in ids[10:12]])

    at = learned_page()
    (warning,) = at.main.warning
    assert warning.value == ("the learned judge needs at least 10 agreed labels with 3 of each verdict;"
                             " there are 12 (10 Acceptable, 2 Unacceptable)")
    assert "\n" not in warning.value
    assert not at.main.error  # the refusal is its one line, not a second "cannot work" box
    assert not any("have a proposal from learned" in t for t in texts(at))  # no version without a model
    assert at.button(key=ui.K_RUN).disabled
    with Store(app_db) as store:
        store.decide(ids[12], "ann", Verdict.UNACCEPTABLE)
    at.run()
    ok(at)
    assert not at.main.warning and texts(at)[0].startswith("Can train: 13 agreed labels (10 Acceptable, 3 Unacceptable)")
    assert not at.button(key=ui.K_RUN).disabled
    with Store(app_db) as store:
        assert store.proposals(judge="learned") == []


def test_learned_works_on_the_picked_dataset_only(app_db: Path) -> None:
    demo_store(app_db, "alpha")
    demo_store(app_db, "beta")
    with Store(app_db) as store:
        import_decisions(store, DECISIONS, "developer", dataset="beta")

    at = learned_page("alpha")  # no labels in alpha: refused, though beta has 60
    (warning,) = at.main.warning
    assert "there are 0 (0 Acceptable, 0 Unacceptable)" in warning.value
    assert at.button(key=ui.K_RUN).disabled

    at = learned_page("beta")
    assert texts(at)[0].startswith("Can train: 60 agreed labels")
    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at), timeout=120)
    assert any(t.startswith("60 proposals stored") for t in texts(at))
    with Store(app_db) as store:
        assert {p.dataset for p in store.proposals(judge="learned")} == {"beta"}
        assert len(store.proposals(judge="learned")) == 60
