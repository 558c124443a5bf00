"""The Review page's retrain offer (clusterqc/ui/learned.py), driven through Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from clusterqc.ingest import demo_path, read_files, write_clusters
from clusterqc.judges.offline import cluster_features
from clusterqc.model import Verdict
from clusterqc.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
RETRAIN = "cqc_learned_retrain"


def retrain_buttons(at: AppTest) -> list:
    return [b for b in at.main.button if b.key == RETRAIN]


def test_retrain_button_every_ten_decisions(app_db: Path) -> None:
    with Store(app_db) as store:
        write_clusters(store, read_files([str(demo_path())], None))
        clusters = list(store.iter_clusters())
        # Labels from the offline verdict, flipped on a few, so both verdicts are there.
        verdicts = [(c.id, cluster_features(c).verdict, "") for c in clusters]
        first = [v for v in verdicts if v[1] is Verdict.UNACCEPTABLE][:4] + [v for v in verdicts if v[1] is Verdict.ACCEPTABLE][:8]
        store.decide_many("alice", first[:9])

    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["reviewer"] = "alice"
    at.run()
    assert not at.exception and retrain_buttons(at) == []  # 9 decisions: nothing offered yet

    with Store(app_db) as store:
        store.decide_many("alice", first[9:])
    at.run()
    assert not at.exception
    (button,) = retrain_buttons(at)
    button.click()
    at.run()
    assert not at.exception
    # The retrain runs on its own thread; the page says so and stays usable meanwhile.
    job = at.session_state["cqc_learned_job"]
    assert any(t.value.startswith("Retraining the learned judge in the background") for t in at.main.text) or not job.running
    assert job.wait(120)
    at.run()
    assert not at.exception
    assert any("cross-validated kappa" in s.value and "proposed for 60 clusters" in s.value for s in at.main.success)
    assert retrain_buttons(at) == []
    with Store(app_db) as store:
        learned = store.proposals(judge="learned")
        assert len(learned) == 60 and all(p.confidence is not None for p in learned)
        rest = [v for v in verdicts if v[0] not in {f[0] for f in first}][:10]
        store.decide_many("alice", rest)
    at.run()
    assert len(retrain_buttons(at)) == 1  # ten more decisions: offered again
