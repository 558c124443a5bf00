"""Verdicts combined with a CLIP-score cut, the subset manifest, and `check-subset`.

The subsets are compared with a direct numpy computation over a synthetic pool in DataComp's
layout (uid, cluster_id, distance, clip_l14_similarity_score, clip_b32_similarity_score),
whose scores are rounded so that many samples tie at the cut.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store
from clusterqc.subset import ScoreCut, build_subset, reference_pairs

N = 5000
K = 10
KEPT = {0, 2, 3, 7}  # reviewed Acceptable; 1, 4 Unacceptable; 5 model-only Acceptable; rest nothing


@pytest.fixture
def pool(tmp_path: Path) -> dict[str, object]:
    rng = np.random.default_rng(14)
    uids = [bytes(r).hex() for r in rng.integers(0, 256, size=(N, 16), dtype=np.uint8)]
    clusters = rng.integers(0, K, size=N)
    scores = np.round(rng.normal(0.26, 0.04, size=N), 2)  # 2 decimals: dozens of ties per value
    table = pa.table({
        "uid": uids,
        "cluster_id": [f"Cluster_{c}" for c in clusters],
        "distance": rng.random(N),
        "clip_l14_similarity_score": scores,
        "clip_b32_similarity_score": scores - 0.02,
    })
    path = tmp_path / "assignments.parquet"
    pq.write_table(table, path, row_group_size=1000)
    db = tmp_path / "pool.db"
    with Store(db) as store:
        store.import_clusters([Cluster(f"Cluster_{i}", (Sample(f"c{i}"),), (Sample(f"f{i}"),), dataset="small")
                               for i in range(K)])
        store.add_proposal(Proposal("Cluster_5", "gpt-x", "v1", Verdict.ACCEPTABLE, "r"))
        for i in KEPT:
            store.decide(f"Cluster_{i}", "ann", Verdict.ACCEPTABLE)
        for i in (1, 4):
            store.decide(f"Cluster_{i}", "bob", Verdict.UNACCEPTABLE)
    return {"path": path, "db": db, "uids": np.array(uids), "clusters": clusters, "scores": scores, "table": table}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def expected(pool: dict[str, object], cut: float, kept: set[int] = KEPT) -> np.ndarray:
    mask = np.isin(pool["clusters"], list(kept)) & (pool["scores"] >= cut)
    return np.sort(reference_pairs(pool["uids"][mask]))


def top_cut(scores: np.ndarray, fraction_tenths: int) -> float:
    """The score at rank ceil(F x n), descending, with F in tenths (exact integer arithmetic)."""
    rank = -(-fraction_tenths * len(scores) // 10)
    return float(np.sort(scores)[::-1][rank - 1])


def test_clip_min_keeps_kept_clusters_samples_at_or_above_x(pool: dict, tmp_path: Path) -> None:
    x = 0.27  # a score many samples have exactly
    assert np.count_nonzero(pool["scores"] == x) > 10
    out = tmp_path / "subset.npy"
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(pool["path"]),
                     "--out", str(out), "--clip-min", str(x))
    assert code == 0, text
    got = np.load(out)
    assert got.dtype == np.dtype("u8,u8") and np.array_equal(got, expected(pool, x))
    alone = int(np.count_nonzero(pool["scores"] >= x))
    assert f"that cut alone would keep {alone:,} ({alone / N:.1%} of the pool)" in text
    assert f"samples:  kept {len(got):,} of {N:,} ({len(got) / N:.1%} of the pool)" in text
    assert "clusters: kept 4, dropped 6" in text


def test_clip_top_cut_is_the_score_at_rank_ceil_f_n_with_ties_kept(pool: dict, tmp_path: Path) -> None:
    cut = top_cut(pool["scores"], 3)
    rank = math.ceil(3 * N / 10)
    # The cut falls inside a run of ties: more samples score >= cut than the rank itself.
    assert np.count_nonzero(pool["scores"] >= cut) > rank
    out = tmp_path / "top.npy"
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(pool["path"]),
                     "--out", str(out), "--clip-top", "0.3")
    assert code == 0, text
    assert np.array_equal(np.load(out), expected(pool, cut))
    assert f"score >= {cut:.6g}" in text


def test_cut_is_over_the_whole_file_whatever_the_chunking(pool: dict) -> None:
    """Per-chunk steps with a global cut: 7-row batches give the same subset as one batch."""
    with Store(pool["db"]) as store:
        whole = build_subset(store, pool["path"], cut=ScoreCut(top_fraction=0.25))
        tiny = build_subset(store, pool["path"], cut=ScoreCut(top_fraction=0.25), batch_rows=7)
    assert whole.cut_value == tiny.cut_value and np.array_equal(whole.uids, tiny.uids)
    rank = math.ceil(N / 4)
    assert whole.cut_value == float(np.sort(pool["scores"])[::-1][rank - 1])


def test_csv_assignments_with_cluster_labels_take_a_cut(pool: dict, tmp_path: Path) -> None:
    table = pool["table"]
    labels = pa.array([int(c.split("_")[1]) for c in table.column("cluster_id").to_pylist()])
    csv_table = pa.table({"uid": table.column("uid"), "cluster_label": labels,
                          "clip_l14_similarity_score": table.column("clip_l14_similarity_score")})
    path = tmp_path / "assignments.csv"
    pacsv.write_csv(csv_table, path)
    out = tmp_path / "csv.npy"
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(path), "--out", str(out),
                     "--clip-top", "0.5", "--include-unreviewed")
    assert code == 0, text
    assert np.array_equal(np.load(out), expected(pool, top_cut(pool["scores"], 5), KEPT | {5}))


def test_manifest_beside_the_subset_holds_the_fields(pool: dict, tmp_path: Path) -> None:
    out = tmp_path / "subset.npy"
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(pool["path"]),
                     "--out", str(out), "--clip-top", "0.3", "--include-unreviewed")
    assert code == 0, text
    manifest = json.loads((tmp_path / "subset.json").read_text(encoding="utf-8"))
    assert set(manifest) >= {"dataset", "assignments", "embedding", "k", "judges", "decisions", "filters",
                             "counts", "created_at"}
    assert manifest["dataset"] == "small" and manifest["k"] == K
    assert manifest["assignments"]["sha256"] == hashlib.sha256(pool["path"].read_bytes()).hexdigest()
    assert manifest["assignments"]["rows"] == N
    assert manifest["judges"] == [{"judge": "gpt-x", "prompt_version": "v1", "role": "label", "kept_clusters": 1}]
    assert manifest["decisions"]["reviewed_clusters"] == 6 and manifest["decisions"]["reviewers"] == ["ann", "bob"]
    assert manifest["decisions"]["model_only_clusters"] == 1
    cut = top_cut(pool["scores"], 3)
    assert manifest["filters"] == {"keep": ["Acceptable"], "include_unreviewed": True, "clip_min": None,
                                   "clip_top": 0.3, "score_column": "clip_l14_similarity_score", "cut_score": cut}
    kept = len(np.load(out))
    counts = manifest["counts"]
    assert counts["kept_samples"] == kept and counts["pool_samples"] == N and counts["kept_clusters"] == 5
    assert counts["share_of_pool"] == kept / N
    assert counts["cut_alone_samples"] == int(np.count_nonzero(pool["scores"] >= cut))


def test_a_cut_without_a_score_column_is_one_line(pool: dict, tmp_path: Path) -> None:
    path = tmp_path / "no_scores.parquet"
    pq.write_table(pool["table"].drop(["clip_l14_similarity_score"]), path)
    out = tmp_path / "x.npy"
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(path), "--out", str(out),
                     "--clip-min", "0.3")
    assert code == 1 and text.count("\n") == 1 and "Traceback" not in text
    assert text.startswith(f"error: {path}: no 'clip_l14_similarity_score' column")
    assert not out.exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--clip-top", "0"], "--clip-top must be a fraction in (0, 1], got 0.0"),
        (["--clip-top", "1.5"], "--clip-top must be a fraction in (0, 1], got 1.5"),
        (["--clip-min", "nan"], "--clip-min must be a finite number, got nan"),
        (["--clip-min", "0.2", "--clip-top", "0.3"], "give one score cut"),
        (["--score-column", "clip_b32_similarity_score"], "--score-column needs a cut"),
    ],
)
def test_bad_cut_flags_are_one_line(pool: dict, tmp_path: Path, flags: list[str], why: str) -> None:
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(pool["path"]),
                     "--out", str(tmp_path / "x.npy"), *flags)
    assert code == 1 and why in text and "Traceback" not in text


def test_a_nan_score_is_refused_with_its_row(pool: dict, tmp_path: Path) -> None:
    scores = pool["scores"].copy()
    scores[1234] = np.nan
    path = tmp_path / "nan.parquet"
    pq.write_table(pool["table"].set_column(3, "clip_l14_similarity_score", pa.array(scores)), path)
    code, text = run("export-uids", "--db", str(pool["db"]), "--assignments", str(path),
                     "--out", str(tmp_path / "x.npy"), "--clip-top", "0.3")
    assert code == 1 and f"{path}: row 1235: the clip_l14_similarity_score is NaN" in text


# --------------------------------------------------------------------------- check-subset


def write_npy(path: Path, pairs: np.ndarray) -> Path:
    np.save(path, pairs, allow_pickle=False)
    return path


def test_check_subset_accepts_a_good_file(pool: dict, tmp_path: Path) -> None:
    good = write_npy(tmp_path / "good.npy", expected(pool, 0.0))
    code, text = run("check-subset", str(good), "--assignments", str(pool["path"]))
    assert code == 0, text
    assert text == f"{good}: {len(np.load(good)):,} uids, dtype u8,u8, sorted, no duplicates, all in {pool['path']}\n"


def test_check_subset_refuses_unsorted_duplicates_and_uids_outside_the_pool(pool: dict, tmp_path: Path) -> None:
    good = expected(pool, 0.0)
    unsorted = good.copy()
    unsorted[[10, 11]] = unsorted[[11, 10]]
    code, text = run("check-subset", str(write_npy(tmp_path / "u.npy", unsorted)))
    assert code == 1 and "Traceback" not in text
    assert text.strip() == f"{tmp_path / 'u.npy'}: order: not sorted, first at index 11 (np.searchsorted in the resharder would miss samples)"

    dup = np.sort(np.concatenate([good, good[[500]]]))
    path = write_npy(tmp_path / "d.npy", dup)
    code, text = run("check-subset", str(path))
    assert code == 1 and "Traceback" not in text
    assert text.strip() == (f"{path}: duplicates: 1 repeated uid(s), first at index 501 (the resharder upsamples"
                            " them; pass --allow-duplicates if that is meant)")
    assert run("check-subset", str(path), "--allow-duplicates")[0] == 0

    outside = np.sort(np.concatenate([good, np.array([(1, 2)], dtype="u8,u8")]))
    path = write_npy(tmp_path / "o.npy", outside)
    code, text = run("check-subset", str(path), "--assignments", str(pool["path"]))
    assert code == 1 and "Traceback" not in text
    assert text.strip() == f"{path}: pool: 1 uid(s) not in {pool['path']}, first at index 0"


def test_check_subset_reports_every_problem_kind_once(tmp_path: Path) -> None:
    pairs = np.array([(5, 0), (3, 0), (3, 0), (9, 9)], dtype="u8,u8")
    shards = tmp_path / "pool"
    shards.mkdir()
    uids = [f"{a:016x}{b:016x}" for a, b in [(5, 0), (3, 0)]]
    pq.write_table(pa.table({"uid": uids[:1], "text": ["x"]}), shards / "00000000.parquet")
    pq.write_table(pa.table({"uid": uids[1:], "text": ["y"]}), shards / "00000001.parquet")
    path = write_npy(tmp_path / "bad.npy", pairs)
    code, text = run("check-subset", str(path), "--pool", str(shards))
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 3 and "Traceback" not in text
    assert "order: not sorted, first at index 1" in lines[0]
    assert "duplicates: 1 repeated uid(s), first at index 2" in lines[1]
    assert f"pool: 1 uid(s) not in {shards}, first at index 3" in lines[2]


@pytest.mark.parametrize("kind", ["dtype", "pickle", "garbage", "missing"])
def test_check_subset_refuses_what_is_not_a_uid_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.npy"
    if kind == "dtype":
        np.save(path, np.arange(4, dtype=np.int64))
    elif kind == "pickle":
        np.save(path, np.array([{"uid": 1}], dtype=object), allow_pickle=True)
    elif kind == "garbage":
        path.write_bytes(b"not an npy file at all")
    code, text = run("check-subset", str(path))
    assert code == 1 and "Traceback" not in text and text.count("\n") == 1
    assert str(path) in text
    if kind == "dtype":
        assert "dtype: int64 (4), expected a 1-d array of u8,u8" in text
