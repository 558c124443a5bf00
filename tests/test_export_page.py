"""The Export page in AppTest: download buttons, empty state, the uid subset from an upload."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGE = "views/export.py"
A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


@pytest.fixture
def db(app_db: Path) -> Path:
    return app_db


@pytest.fixture
def filled(db: Path) -> Path:
    """Cluster_0 reviewed Acceptable, Cluster_1 reviewed Unacceptable, Cluster_2 model-only Acceptable."""
    with Store(db) as store:
        store.import_clusters([Cluster(f"Cluster_{i}", (Sample(f"a{i}"),), (Sample(f"b{i}"),)) for i in range(3)])
        for i, v in enumerate([A, U, A]):
            store.add_proposal(Proposal(f"Cluster_{i}", "gpt", "v1", v, "=SUM(A1) reason"))
        store.decide("Cluster_0", "alice", A, note="**not markdown** <b>x</b>")
        store.decide("Cluster_1", "alice", U)
    return db


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["reviewer"] = "alice"
    at.run()
    at.switch_page(PAGE)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_empty_state(db: Path) -> None:
    at = open_page()
    no_exception(at)
    assert any("No reviewed clusters yet" in i.value for i in at.main.info)
    assert not at.main.get("download_button")


def test_download_buttons_and_preview(filled: Path) -> None:
    at = open_page()
    no_exception(at)
    labels = [b.proto.label for b in at.main.get("download_button")]
    assert labels == ["Download CSV", "Download JSONL", "Download PARQUET"]
    preview = at.main.dataframe[0].value
    assert preview["cluster_id"].tolist() == ["Cluster_0", "Cluster_1"]
    assert preview.loc[0, "note"] == "**not markdown** <b>x</b>"  # a table cell, not markdown
    assert not any("not markdown" in m.value for m in at.main.markdown)
    at.checkbox(key="export_include_unreviewed").check().run()
    no_exception(at)
    assert at.main.dataframe[0].value["label_source"].tolist() == ["reviewed", "reviewed", "model_only"]


def test_uid_subset_from_an_uploaded_parquet(filled: Path) -> None:
    rng = np.random.default_rng(5)
    uids = [bytes(r).hex() for r in rng.integers(0, 256, size=(300, 16), dtype=np.uint8)]
    labels = rng.integers(0, 4, size=300)  # Cluster_3 is not in the database
    buf = io.BytesIO()
    pq.write_table(pa.table({"uid": uids, "cluster_label": pa.array(labels, pa.int64())}), buf)
    at = open_page()
    at.file_uploader(key="export_assignments").set_value(("pool.parquet", buf.getvalue(), "application/octet-stream"))
    at.run()
    no_exception(at)
    table = at.main.dataframe[-1].value
    kept = int((labels == 0).sum())
    assert table.loc["samples", "kept"] == kept and table.loc["clusters", "kept"] == 1
    assert any(f"Kept {kept / 300:.1%} of the pool" in t.value for t in at.main.text)
    assert "Download uid subset (.npy)" in [b.proto.label for b in at.main.get("download_button")]


def test_bad_upload_is_one_line_naming_the_users_file(filled: Path) -> None:
    at = open_page()
    content = b"uid,cluster_label\n" + b"0" * 32 + b",0\nnot-a-uid,1\n"
    at.file_uploader(key="export_assignments").set_value(("pool.csv", content, "text/csv"))
    at.run()
    assert not at.exception
    (err,) = at.main.error
    # header = row 1, as import counts CSV rows
    assert err.value.startswith("pool.csv: row 3: uid 'not-a-uid'") and "/tmp" not in err.value
