"""The DataComp uid subset: loads with numpy, sorted, u8,u8, and equal to the slow reference."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store
from clusterqc.subset import (
    SubsetError,
    build_subset,
    keys_to_pairs,
    reference_pairs,
    sort_keys,
    uid_keys,
    uids_to_pairs,
)

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE
N_CLUSTERS = 8
# Cluster_0..3 reviewed (0, 1 Acceptable; 2, 3 Unacceptable); Cluster_4, 5 model-only (A, U);
# Cluster_6 nothing; Cluster_7 not in the database at all.
REVIEWED = {0: A, 1: A, 2: U, 3: U}
MODEL_ONLY = {4: A, 5: U}


def random_uids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[: n // 10, 8:] = 0  # shared/zero halves exercise the ordering of the second integer
    raw[: n // 20, :8] = raw[0, :8]
    uids = [bytes(r).hex() for r in raw]
    return [u.upper() if i % 7 == 0 else u for i, u in enumerate(uids)]


def make_store(path: Path) -> Store:
    store = Store(path)
    store.import_clusters(
        [Cluster(f"Cluster_{i}", (Sample(f"c{i}"),), (Sample(f"f{i}"),)) for i in range(N_CLUSTERS - 1)], source="t"
    )
    for i, v in {**REVIEWED, **MODEL_ONLY}.items():
        store.add_proposal(Proposal(f"Cluster_{i}", "m", "v1", v, "r"))
    for i, v in REVIEWED.items():
        store.decide(f"Cluster_{i}", "ann", v)
    return store


def write_csv(path: Path, uids: list[str], labels: list[int], as_ids: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "data_points", "cluster_id" if as_ids else "cluster_label"])
        for i, (u, c) in enumerate(zip(uids, labels)):
            caption = f'caption {i}, with "quotes"\nand a second line 東京' if i % 5 == 0 else f"caption {i}"
            w.writerow([u, caption, f"Cluster_{c}" if as_ids else c])


@pytest.fixture
def pool(tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    rng = np.random.default_rng(42)
    uids = random_uids(rng, 5000)
    labels = rng.integers(0, N_CLUSTERS, size=len(uids))
    make_store(tmp_path / "s.db").close()
    return tmp_path, uids, labels


def expected(uids: list[str], labels: np.ndarray, keep: set[int]) -> np.ndarray:
    return np.sort(reference_pairs([u for u, c in zip(uids, labels) if int(c) in keep]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_conversion_matches_the_reference(seed: int) -> None:
    uids = random_uids(np.random.default_rng(seed), 3000)
    got = uids_to_pairs(pa.array(uids))
    assert got.dtype == np.dtype("u8,u8")
    assert np.array_equal(got, reference_pairs(uids))
    sliced = pa.array(uids).slice(17, 100)  # arrays that start at an offset into their buffers
    assert np.array_equal(uids_to_pairs(sliced), reference_pairs(uids[17:117]))
    large = pa.array(uids, type=pa.large_string())
    assert np.array_equal(uids_to_pairs(large), reference_pairs(uids))


def test_cli_subset_from_csv_loads_sorted_and_matches(pool: tuple[Path, list[str], np.ndarray]) -> None:
    tmp, uids, labels = pool
    write_csv(tmp / "a.csv", uids, labels.tolist())
    res = CliRunner().invoke(cli, ["export-uids", "--db", str(tmp / "s.db"), "--assignments", str(tmp / "a.csv"),
                                   "--out", str(tmp / "subset.npy")])
    assert res.exit_code == 0, res.output
    got = np.load(tmp / "subset.npy")
    assert got.dtype == np.dtype("u8,u8")
    assert np.array_equal(np.lexsort((got["f1"], got["f0"])), np.arange(len(got)))  # sorted
    assert np.array_equal(got, expected(uids, labels, {0, 1}))
    kept = int(np.isin(labels, [0, 1]).sum())
    assert "clusters: kept 2, dropped 6 (4 without a label, 1 not in the database)" in res.output
    assert f"kept {kept:,} of 5,000 ({kept / 5000:.1%} of the pool)" in res.output


def test_include_unreviewed_and_keep_unacceptable(pool: tuple[Path, list[str], np.ndarray]) -> None:
    tmp, uids, labels = pool
    write_csv(tmp / "a.csv", uids, labels.tolist())
    args = ["export-uids", "--db", str(tmp / "s.db"), "--assignments", str(tmp / "a.csv")]
    res = CliRunner().invoke(cli, args + ["--out", str(tmp / "a.npy"), "--include-unreviewed"])
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp / "a.npy"), expected(uids, labels, {0, 1, 4}))
    res = CliRunner().invoke(cli, args + ["--out", str(tmp / "u.npy"), "--keep", "Unacceptable"])
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp / "u.npy"), expected(uids, labels, {2, 3}))


def test_parquet_with_cluster_ids_in_small_batches(pool: tuple[Path, list[str], np.ndarray]) -> None:
    tmp, uids, labels = pool
    pq.write_table(pa.table({"cluster_id": [f"Cluster_{c}" for c in labels], "uid": uids}), tmp / "a.parquet")
    with Store(tmp / "s.db") as store:
        result = build_subset(store, tmp / "a.parquet", batch_rows=333)
    assert np.array_equal(result.uids, expected(uids, labels, {0, 1}))
    assert (result.total_samples, result.kept_clusters, result.unknown_clusters) == (5000, 2, 1)


def test_csv_streamed_in_small_blocks(pool: tuple[Path, list[str], np.ndarray]) -> None:
    tmp, uids, labels = pool
    write_csv(tmp / "a.csv", uids, labels.tolist(), as_ids=True)
    with Store(tmp / "s.db") as store:
        result = build_subset(store, tmp / "a.csv", block_bytes=4096)
    assert np.array_equal(result.uids, expected(uids, labels, {0, 1}))


@pytest.mark.parametrize(
    ("bad", "why"),
    [("g" * 32, "not a hex digit"), ("0" * 31, "not 32 hex digits"), ("0" * 33, "not 32 hex digits"),
     ("", "not 32 hex digits"), (" " + "0" * 31, "not a hex digit")],
)
def test_malformed_uid_names_the_row_and_writes_nothing(
    pool: tuple[Path, list[str], np.ndarray], bad: str, why: str
) -> None:
    tmp, uids, labels = pool
    uids = list(uids)
    uids[4321] = bad  # row 4323 as import counts CSV rows (the header is row 1), in a later streamed block
    write_csv(tmp / "a.csv", uids, labels.tolist())
    with Store(tmp / "s.db") as store, pytest.raises(SubsetError, match=f"row 4323: .*{why}"):
        build_subset(store, tmp / "a.csv", block_bytes=4096)
    res = CliRunner().invoke(cli, ["export-uids", "--db", str(tmp / "s.db"), "--assignments", str(tmp / "a.csv"),
                                   "--out", str(tmp / "subset.npy")])
    assert res.exit_code == 1 and "row 4323" in res.output and str(tmp / "a.csv") in res.output
    assert res.output.count("\n") == 1
    assert not (tmp / "subset.npy").exists() and not list(tmp.glob(".subset*"))


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    make_store(tmp_path / "s.db").close()
    (tmp_path / "nouid.csv").write_text("id,cluster_label\nx,1\n")
    (tmp_path / "nolabel.csv").write_text("uid,other\n" + "0" * 32 + ",1\n")
    (tmp_path / "badlabel.csv").write_text("uid,cluster_label\n" + "0" * 32 + ",1\n" + "0" * 32 + ",seven\n")
    runner = CliRunner()
    for name, msg in [("nouid.csv", "no 'uid' column"), ("nolabel.csv", "cluster_id' or 'cluster_label"),
                      ("badlabel.csv", "row 3: cluster_label 'seven' is not an integer"),
                      ("missing.csv", "no such file")]:
        res = runner.invoke(cli, ["export-uids", "--db", str(tmp_path / "s.db"), "--assignments",
                                  str(tmp_path / name), "--out", str(tmp_path / "o.npy")])
        assert res.exit_code == 1 and msg in res.output and name in res.output, res.output
    assert not (tmp_path / "o.npy").exists()


def test_keys_sort_like_the_integer_pairs() -> None:
    uids = ["ffffffffffffffff0000000000000000", "00000000000000010000000000000000",
            "0000000000000000ffffffffffffffff", "00000000000000000000000000000001", "0" * 32]
    keys = np.sort(uid_keys(pa.array(uids)))
    assert np.array_equal(keys_to_pairs(keys), np.sort(reference_pairs(uids)))


@pytest.mark.parametrize("shared_bytes", [0, 5, 7, 8, 16])
def test_sort_keys_orders_prefix_ties_and_duplicates(shared_bytes: int) -> None:
    """The uint64 prefix sort must fall back to full byte order where prefixes tie."""
    rng = np.random.default_rng(shared_bytes)
    raw = rng.integers(0, 256, size=(4000, 16), dtype=np.uint8)
    raw[:, :shared_bytes] = 9  # every key shares this many leading bytes
    raw[::13] = raw[1::13][: len(raw[::13])]  # exact duplicates
    uids = [bytes(r).hex() for r in raw]
    chunks = [uid_keys(pa.array(uids[i : i + 700])) for i in range(0, len(uids), 700)]
    assert np.array_equal(sort_keys(chunks), np.sort(reference_pairs(uids)))
