"""Cluster evidence: the card's facts (pure functions), and the card, sidebar and Export page in AppTest.

The pool is real: the demo clusters with DataComp-small's real CLIP L/14 scores
(tests/evidence_pool.py), in DataComp's assignments layout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from card_text import plain_text
from clusterqc.evidence import (
    PoolView,
    card_evidence,
    clip_text,
    evidence_figure,
    pool_view,
    subset_so_far,
)
from clusterqc.ingest import import_files
from clusterqc.model import Cluster, Sample, Verdict
from clusterqc.pool_profile import record_pool_profile
from clusterqc.store import Store
from evidence_pool import build

APP = str(Path(__file__).resolve().parent.parent / "app.py")
KEPT = ("Cluster_4", "Cluster_7", "Cluster_12")


@pytest.fixture
def pool_files(tmp_path: Path) -> tuple[Path, Path]:
    return build(tmp_path)


@pytest.fixture
def pool_db(tmp_path: Path, pool_files: tuple[Path, Path]) -> Path:
    db = tmp_path / "evidence.db"
    clusters, assignments = pool_files
    with Store(db) as store:
        import_files(store, [clusters])
        for cid in KEPT:
            store.decide(cid, "ann", Verdict.ACCEPTABLE)
        store.decide("Cluster_5", "ann", Verdict.UNACCEPTABLE)
    return db


def frame(assignments: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(assignments)
    return {"cluster": np.array(table.column("cluster_id").to_pylist()),
            "score": table.column("clip_l14_similarity_score").to_numpy()}


def test_clip_text_is_x100_with_one_decimal() -> None:
    assert clip_text(0.2431) == "CLIP 24.3" and clip_text(0.30449) == "CLIP 30.4" and clip_text(None) is None


def test_card_facts_from_stats_and_the_pool_profile(pool_db: Path, pool_files: tuple[Path, Path]) -> None:
    pool = frame(pool_files[1])
    with Store(pool_db) as store:
        before = card_evidence(store.get_cluster("Cluster_4"), pool_view(store))
        record_pool_profile(store, pool_files[1])
        view = pool_view(store)
        cluster = store.get_cluster("Cluster_4")
        ev = card_evidence(cluster, view, store.pool_cluster("Cluster_4"))
    mine = pool["score"][pool["cluster"] == "Cluster_4"]
    n = len(pool["score"])
    # Without a profile the pool is what the clusters' stats add up to: no quartiles, no cut.
    assert before.pool_quartiles is None and before.baseline_cut is None
    assert before.facts[0] == f"CLIP {mine.mean() * 100:.1f} mean (pool {pool['score'].mean() * 100:.1f})"
    assert ev.clip == f"CLIP {mine.mean() * 100:.1f}"
    assert ev.facts[1] == f"{len(mine) / n:.2%} of the pool ({len(mine):,} of {n:,} samples)"
    q = np.percentile(mine, [25, 50, 75]) * 100
    p = np.percentile(pool["score"], [25, 50, 75]) * 100
    assert ev.facts[2] == f"quartiles {q[0]:.1f} / {q[1]:.1f} / {q[2]:.1f} (pool {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f})"
    assert ev.facts[3].startswith("median at pool percentile ")
    cut = np.sort(pool["score"])[::-1][math.ceil(0.3 * n) - 1]
    assert ev.baseline_cut == cut
    assert ev.facts[4] == f"{np.mean(mine >= cut):.1%} pass the CLIP-30% cut ({cut * 100:.1f})"
    expected = [(i, f"CLIP {s.clip_score * 100:.1f}") for i, s in enumerate(cluster.samples, start=1)]
    assert list(ev.sample_scores) == expected
    fig = evidence_figure(ev)
    assert fig is not None and [t.name for t in fig.data] == ["cluster", "pool"]
    assert fig.data[0].median[0] == pytest.approx(q[1])


def test_a_cluster_without_evidence_shows_nothing() -> None:
    ev = card_evidence(Cluster("C", (Sample("a"),), (Sample("b"),), size=10), PoolView())
    assert ev.empty and evidence_figure(ev) is None
    # A size alone (every luvdatacomp file) is not evidence: the card stays as it was.
    known = PoolView(samples=1000, clip_mean=0.2, percentiles=tuple(np.linspace(0, 0.4, 101)), source="assignments")
    assert card_evidence(Cluster("C", (Sample("a"),), (Sample("b"),), size=10), known).empty
    # One sample's score is: the card shows it, numbered as the samples are.
    scored = Cluster("C", (Sample("a"), Sample("b", clip_score=0.3125)), (Sample("c"),))
    assert card_evidence(scored, known).sample_scores == ((2, "CLIP 31.2"),)


def test_subset_so_far_against_the_assignments(pool_db: Path, pool_files: tuple[Path, Path]) -> None:
    pool = frame(pool_files[1])
    n = len(pool["score"])
    kept = np.isin(pool["cluster"], KEPT)
    with Store(pool_db) as store:
        without = subset_so_far(store, pool_view(store))
        assert (without.clusters, without.samples, without.pool_samples) == (3, int(kept.sum()), n)
        assert without.baseline_samples is None
        assert "CLIP-30% baseline: unknown until `clusterqc pool-profile" in without.lines()[1]
        record_pool_profile(store, pool_files[1])
        summary = subset_so_far(store, pool_view(store))
    cut = np.sort(pool["score"])[::-1][math.ceil(0.3 * n) - 1]
    assert summary.baseline_samples == int((pool["score"] >= cut).sum())
    assert summary.both_samples == int((kept & (pool["score"] >= cut)).sum())
    assert summary.lines()[0] == f"Subset so far: 3 clusters, {int(kept.sum()):,} samples ({kept.sum() / n:.1%} of the pool)"


# --------------------------------------------------------------------------- the app


def app(db: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    monkeypatch.setenv("CLUSTERQC_DB", str(db))
    monkeypatch.setenv("CLUSTERQC_DEMO", "0")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"reviewer": "bob", **params})
    return at.run()


def test_card_and_sidebar_show_the_evidence(
    pool_db: Path, pool_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(pool_db) as store:
        record_pool_profile(store, pool_files[1])
        cluster = store.get_cluster("Cluster_9")
        expected = card_evidence(cluster, pool_view(store), store.pool_cluster("Cluster_9"))
        summary = subset_so_far(store, pool_view(store)).lines()
    at = app(pool_db, monkeypatch, cluster="Cluster_9")
    assert not at.exception and not at.error
    main = [t.value for t in at.main.text]
    assert " · ".join(expected.facts[:2]) in main and expected.facts[0].startswith("CLIP ")
    assert " · ".join(expected.facts[2:]) in main
    # Each scored sample's CLIP score is the tag right after its caption on the card.
    card = [line for h in at.main.get("html") for line in plain_text(h.value)]
    assert expected.sample_scores
    for n, score in expected.sample_scores:
        at_caption = next(k for k, line in enumerate(card) if line.startswith(f"{n}. "))
        assert card[at_caption + 1] == score, (n, card[at_caption:at_caption + 3])
    assert not any(t.startswith("CLIP per sample") for t in main)
    assert len(at.main.get("plotly_chart")) == 1
    side = [t.value for t in at.sidebar.text]
    assert all(line in side for line in summary) and any(s.startswith("CLIP-30% baseline: 1,761 samples") for s in side)


def test_card_without_evidence_is_unchanged(app_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(app_db) as store:
        store.import_clusters([Cluster("C_1", (Sample("a"),), (Sample("b"),))])
    at = app(app_db, monkeypatch)
    assert not at.exception and not at.error
    assert not at.main.get("plotly_chart") and not any("CLIP" in t.value for t in at.main.text)
    # No sizes, no stats, no profile: the sidebar has no subset figures to show either.
    assert not any("Subset so far" in t.value or "CLIP" in t.value for t in at.sidebar.text)


def test_export_page_cut_preview_manifest_and_profile(
    pool_db: Path, pool_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = frame(pool_files[1])
    n = len(pool["score"])
    at = app(pool_db, monkeypatch)
    at.switch_page("views/export.py").run()
    at.file_uploader(key="export_assignments").set_value(
        ("assignments.parquet", pool_files[1].read_bytes(), "application/octet-stream"))
    at.radio(key="export_cut").set_value("top").run()
    at.number_input(key="export_clip_top").set_value(0.3).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    cut = np.sort(pool["score"])[::-1][math.ceil(0.3 * n) - 1]
    kept = int((np.isin(pool["cluster"], KEPT) & (pool["score"] >= cut)).sum())
    assert at.main.dataframe[-1].value.loc["samples", "kept"] == kept
    assert any(t.value.startswith(f"Cut: top 0.3 of the pool by clip_l14_similarity_score: score >= {cut:.6g}")
               for t in at.main.text)
    manifest = json.loads([c.value for c in at.main.code if c.language == "json"][0])
    assert manifest["filters"]["clip_top"] == 0.3 and manifest["counts"]["kept_samples"] == kept
    assert manifest["assignments"]["file"] == "assignments.parquet"
    labels = [b.proto.label for b in at.main.get("download_button")]
    assert "Download uid subset (.npy)" in labels and "Download manifest (subset.json)" in labels
    at.button(key="export_record_profile").click().run()
    assert any("Pool profile recorded: 5,868 samples" in s.value for s in at.main.success)
    with Store(pool_db) as store:
        assert store.pool_profile()["file"] == "assignments.parquet"
