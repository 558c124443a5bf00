"""`clusterqc cluster POOL_DIR` on pools in DataComp's own layout (tests/pool_fixtures.py).

Every check recomputes from the files written (parquet, npz, centroids .npy) with numpy:
each uid assigned once to its nearest centroid at the written distance, closest/furthest the
true extremes of the whole pool (not of one shard), stats equal to a direct computation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.ingest import read_clusters
from clusterqc.pool import steps
from clusterqc.pool.engines.local import LocalEngine
from clusterqc.pool.run import training_sample
from clusterqc.pool.shards import Embedding, open_pool
from pool_fixtures import PlantedPool, read_pool_embedding, read_pool_table, write_pool

K = 8
SHARDS = [300, 450, 1, 250, 0, 120]  # a one-row and an empty shard on purpose


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> PlantedPool:
    return write_pool(tmp_path_factory.mktemp("pool") / "pool", SHARDS, k=K, l14_dim=24, b32_dim=16, seed=3,
                      noise=1.2, spread=1.0)


@pytest.fixture(scope="module")
def run(pool: PlantedPool, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out")
    code, stdout, stderr = run_cli(
        "cluster", str(pool.root), "--k", str(K), "--out", str(out / "clusters.json"),
        "--assignments", str(out / "assign.parquet"), "--centroids", str(out / "centroids.npy"),
    )
    assert code == 0, stderr
    return {
        "out": out,
        "stdout": stdout,
        "stderr": stderr,
        "clusters": json.loads((out / "clusters.json").read_text(encoding="utf-8")),
        "assign": pq.read_table(out / "assign.parquet"),
        "centroids": np.load(out / "centroids.npy"),
        "x": read_pool_embedding(pool, "l14_txt"),
        "meta": read_pool_table(pool),
    }


def labels_of(assign) -> np.ndarray:
    return np.array([int(c.split("_")[1]) for c in assign.column("cluster_id").to_pylist()])


def test_every_uid_is_assigned_once_to_its_nearest_centroid(pool: PlantedPool, run: dict) -> None:
    assign = run["assign"]
    assert assign.column_names == ["uid", "cluster_id", "distance", "clip_l14_similarity_score",
                                   "clip_b32_similarity_score"]
    assert assign.column("uid").to_pylist() == pool.uids  # once each, in pool order
    labels = labels_of(assign)
    x, c = run["x"].astype(np.float64), run["centroids"].astype(np.float64)
    assert c.shape == (K, 24)
    dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    written = assign.column("distance").to_numpy()
    assert np.allclose(written, dist[np.arange(len(x)), labels], rtol=1e-5, atol=1e-6)
    assert np.allclose(written, dist.min(axis=1), rtol=1e-5, atol=1e-6)
    meta = run["meta"]
    for col in ("clip_l14_similarity_score", "clip_b32_similarity_score"):
        assert assign.column(col).to_pylist() == meta.column(col).to_pylist()
    assert sum(v["size"] for v in run["clusters"].values()) == len(pool.uids)


def test_closest_and_furthest_are_the_global_extremes(pool: PlantedPool, run: dict) -> None:
    assign = run["assign"]
    labels = labels_of(assign)
    d = assign.column("distance").to_numpy()
    rows = np.arange(len(d))
    uids = np.array(pool.uids)
    shard_of = np.repeat(np.arange(len(SHARDS)), SHARDS)
    spanning = 0
    for name, c in run["clusters"].items():
        n = int(name.split("_")[1])
        members = rows[labels == n]
        closest = members[np.lexsort((members, d[members]))][:5]
        furthest = members[np.lexsort((members, -d[members]))][:5]
        assert [s["uid"] for s in c["closest_samples"]] == uids[closest].tolist()
        assert [s["uid"] for s in c["furthest_samples"]] == uids[furthest].tolist()
        assert [s["distance"] for s in c["closest_samples"]] == d[closest].astype(float).tolist()
        spanning += len(set(shard_of[closest])) > 1 or len(set(shard_of[furthest])) > 1
    assert spanning  # the extremes do come from several shards: a per-shard answer would fail


def test_samples_carry_uid_url_text_and_clip_scores(run: dict) -> None:
    meta = run["meta"].to_pylist()
    by_uid = {r["uid"]: r for r in meta}
    for c in run["clusters"].values():
        for s in c["closest_samples"] + c["furthest_samples"]:
            row = by_uid[s["uid"]]
            assert (s["url"], s["text"]) == (row["url"], row["text"])
            assert s["clip_score"] == row["clip_l14_similarity_score"]
            assert s["clip_b32_score"] == row["clip_b32_similarity_score"]


def test_stats_match_a_direct_computation(pool: PlantedPool, run: dict) -> None:
    labels = labels_of(run["assign"])
    scores = run["meta"].column("clip_l14_similarity_score").to_numpy()
    assert set(run["clusters"]) == {f"Cluster_{n}" for n in np.unique(labels)}
    for name, c in run["clusters"].items():
        mine = scores[labels == int(name.split("_")[1])]
        st = c["stats"]
        assert st["size"] == c["size"] == len(mine)
        assert st["share"] == pytest.approx(len(mine) / len(labels), rel=1e-12)
        assert st["clip_l14_mean"] == pytest.approx(mine.mean(), rel=1e-9)
        q1, med, q3 = np.quantile(mine, [0.25, 0.5, 0.75])
        assert (st["clip_l14_q1"], st["clip_l14_median"], st["clip_l14_q3"]) == pytest.approx((q1, med, q3), rel=1e-6)


def test_the_cluster_file_imports(run: dict) -> None:
    clusters = read_clusters(run["out"] / "clusters.json")
    assert len(clusters) == len(run["clusters"])
    first = clusters[0]
    assert first.closest[0].uid and first.closest[0].url.startswith("https://images.example/")


def test_progress_is_a_plain_line_off_a_terminal(run: dict) -> None:
    assert f"sample: {len(SHARDS)}/{len(SHARDS)} shards" in run["stderr"]
    assert f"assign: {len(SHARDS)}/{len(SHARDS)} shards, {sum(SHARDS):,}/{sum(SHARDS):,} rows (100%)" in run["stderr"]
    assert "\r" not in run["stderr"]


def test_centroids_from_gives_the_same_assignments(pool: PlantedPool, run: dict, tmp_path: Path) -> None:
    code, _, err = run_cli("cluster", str(pool.root), "--centroids-from", str(run["out"] / "centroids.npy"),
                           "--out", str(tmp_path / "c.json"), "--assignments", str(tmp_path / "a.parquet"))
    assert code == 0, err
    assert pq.read_table(tmp_path / "a.parquet").equals(run["assign"])
    assert (tmp_path / "c.json").read_bytes() == (run["out"] / "clusters.json").read_bytes()


def test_a_pyarrow_uri_reads_the_same_pool(pool: PlantedPool, run: dict, tmp_path: Path) -> None:
    code, _, err = run_cli("cluster", pool.root.resolve().as_uri(), "--k", str(K), "--out", str(tmp_path / "c.json"),
                           "--assignments", str(tmp_path / "a.parquet"))
    assert code == 0, err
    assert pq.read_table(tmp_path / "a.parquet").equals(run["assign"])


def test_concatenated_embedding(pool: PlantedPool, tmp_path: Path) -> None:
    code, out, err = run_cli("cluster", str(pool.root), "--k", "4", "--embedding", "l14_img+b32_txt",
                             "--out", str(tmp_path / "c.json"), "--assignments", str(tmp_path / "a.parquet"),
                             "--centroids", str(tmp_path / "c.npy"))
    assert code == 0, err
    assert "40-d" in out
    x = read_pool_embedding(pool, "l14_img+b32_txt").astype(np.float64)
    c = np.load(tmp_path / "c.npy").astype(np.float64)
    a = pq.read_table(tmp_path / "a.parquet")
    d = ((x[:, None, :] - c[None]) ** 2).sum(axis=2)
    assert np.allclose(a.column("distance").to_numpy(), d.min(axis=1), rtol=1e-5, atol=1e-6)


def test_the_training_sample_is_uniform_and_reproducible(pool: PlantedPool) -> None:
    p = open_pool(str(pool.root), Embedding.parse("l14_txt"))
    engine = LocalEngine(progress=False)
    a = training_sample(p, engine, k=4, max_points_per_centroid=50, seed=7)
    b = training_sample(p, engine, k=4, max_points_per_centroid=50, seed=7)
    c = training_sample(p, engine, k=4, max_points_per_centroid=50, seed=8)
    assert a.shape == (200, 24) and np.array_equal(a, b) and not np.array_equal(a, c)
    quotas = steps.sample_quotas(SHARDS, 200)
    assert sum(quotas) == 200 and quotas[4] == 0
    assert all(abs(q - 200 * n / sum(SHARDS)) < 1 for q, n in zip(quotas, SHARDS))
    x = read_pool_embedding(pool)
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in a)  # real pool rows, not made-up points
    assert len({tuple(r) for r in a}) == 200  # without replacement


# --------------------------------------------------------------------------- refusals


def _copy_pool(pool: PlantedPool, dest: Path) -> Path:
    import shutil

    shutil.copytree(pool.root, dest)
    return dest


def _bad_npz_missing(root: Path) -> str:
    (root / "00000003.npz").unlink()
    return "00000003"


def _bad_row_count(root: Path) -> str:
    with np.load(root / "00000001.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["l14_txt"] = arrays["l14_txt"][:-1]
    np.savez(root / "00000001.npz", **arrays)
    return "00000001"


def _bad_dimension(root: Path) -> str:
    with np.load(root / "00000005.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["l14_txt"] = np.zeros((120, 32), np.float16)
    np.savez_compressed(root / "00000005.npz", **arrays)
    return "00000005"


def _bad_array_missing(root: Path) -> str:
    with np.load(root / "00000000.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "l14_txt"}
    np.savez(root / "00000000.npz", **arrays)
    return "00000000"


@pytest.mark.parametrize("damage", [_bad_npz_missing, _bad_row_count, _bad_dimension, _bad_array_missing])
def test_a_bad_shard_is_one_error_naming_it_and_nothing_is_written(pool: PlantedPool, tmp_path: Path, damage) -> None:
    root = _copy_pool(pool, tmp_path / "pool")
    stem = damage(root)
    outs = [tmp_path / "c.json", tmp_path / "a.parquet", tmp_path / "c.npy"]
    code, _, err = run_cli("cluster", str(root), "--k", "4", "--out", str(outs[0]), "--assignments", str(outs[1]),
                           "--centroids", str(outs[2]))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"shard {stem}" in lines[0], err
    assert "Traceback" not in err
    assert not any(p.exists() for p in outs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool"]  # no temporary left either


def test_a_shard_unreadable_mid_run_leaves_nothing(pool: PlantedPool, tmp_path: Path) -> None:
    """A header that checks out but data that does not (truncated npz) fails in the pass, cleanly."""
    root = _copy_pool(pool, tmp_path / "pool")
    data = (root / "00000003.npz").read_bytes()
    (root / "00000003.npz").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli("cluster", str(root), "--k", "4", "--out", str(tmp_path / "c.json"),
                           "--assignments", str(tmp_path / "a.parquet"))
    assert code == 1 and "shard 00000003" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--assignments", "{pool}/00000000.parquet"], "inside the pool folder"),
        (["--out", "{pool}/00000000.npz"], "inside the pool folder"),
        (["--assignments", "{tmp}/c.json"], "are the same file"),
        (["--centroids", "{tmp}/c.json"], "are the same file"),
    ],
)
def test_outputs_over_inputs_or_each_other_are_refused(pool: PlantedPool, tmp_path: Path, args, message) -> None:
    root = _copy_pool(pool, tmp_path / "pool")
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    fmt = [a.format(pool=root, tmp=tmp_path) for a in args]
    base = ["cluster", str(root), "--k", "4"]
    if "--out" not in args:
        base += ["--out", str(tmp_path / "c.json")]
    code, _, err = run_cli(*base, *fmt)
    assert code == 1 and message in err, err
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    assert not (tmp_path / "c.json").exists()


def test_an_output_over_the_centroids_input_is_refused(run: dict, pool: PlantedPool) -> None:
    c = run["out"] / "centroids.npy"
    before = c.read_bytes()
    code, _, err = run_cli("cluster", str(pool.root), "--centroids-from", str(c), "--out", str(c))
    assert code == 1 and "that is the input --centroids-from" in err
    assert c.read_bytes() == before


def test_centroids_of_another_dimension_are_refused(pool: PlantedPool, tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((4, 16), np.float32))
    code, _, err = run_cli("cluster", str(pool.root), "--centroids-from", str(tmp_path / "c.npy"),
                           "--out", str(tmp_path / "c.json"))
    assert code == 1 and "dimension 16" in err and "24" in err
    assert not (tmp_path / "c.json").exists()


def test_unknown_embedding_and_missing_k(pool: PlantedPool, tmp_path: Path) -> None:
    code, _, err = run_cli("cluster", str(pool.root), "--k", "3", "--embedding", "l14_txt+clip",
                           "--out", str(tmp_path / "c.json"))
    assert code == 1 and "unknown array 'clip'" in err
    code, _, err = run_cli("cluster", str(pool.root), "--out", str(tmp_path / "c.json"))
    assert code == 1 and "k must be at least 1" in err


# --------------------------------------------------------------------------- progress


class _Stream:
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        import io

        self.buf, self.tty = io.StringIO(), tty

    def write(self, text: str) -> int:
        return self.buf.write(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_progress_off_a_terminal_is_a_line_per_interval_and_one_at_the_end() -> None:
    from clusterqc.pool.progress import Progress

    stream = _Stream(tty=False)
    bar = Progress("assign", 30, 3, stream=stream, interval=0.0)
    for _ in range(3):
        bar.update(10)
    bar.close()
    lines = stream.buf.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["assign: 1/3 shards", "assign: 2/3 shards", "assign: 3/3 shards"]
    assert "30/30 rows (100%)" in lines[-1]  # the last update already said it: not printed twice


def test_progress_on_a_terminal_is_a_tqdm_bar() -> None:
    from clusterqc.pool.progress import Progress

    stream = _Stream(tty=True)
    bar = Progress("sample", 30, 3, stream=stream, interval=0.0)
    bar.update(10)
    bar.close()
    text = stream.buf.getvalue()
    assert "\r" in text and "sample" in text and "10.0/30.0" in text and "1/3 shards" in text


# --------------------------------------------------------------------------- assignment kernel


def test_nearest_matches_brute_force_and_breaks_ties_to_the_lower_id() -> None:
    from clusterqc.pool.kmeans import nearest

    rng = np.random.default_rng(5)
    c = rng.standard_normal((7, 16)).astype(np.float32)
    x = np.vstack([rng.standard_normal((3000, 16)), c[[4, 4]]]).astype(np.float32)
    labels, dist = nearest(x, c)
    exact = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(axis=2)
    assert np.array_equal(labels[:3000], exact[:3000].argmin(axis=1))
    assert np.allclose(dist, exact[np.arange(len(x)), labels], rtol=1e-5, atol=1e-6)
    assert labels[3000] == labels[3001] == 4 and dist[3000] == 0
    # exactly equidistant from two centroids (and far from the third): the lower id wins
    pair = np.zeros((3, 16), np.float32)
    pair[0, 0], pair[1, 0], pair[2, 1] = 1.0, -1.0, 50.0
    ties = np.zeros((4, 16), np.float32)
    ties[:, 1] = [0.0, 0.5, -0.25, 3.0]
    for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        got, d = nearest(ties, pair[order])
        assert list(got) == [min(order.index(0), order.index(1))] * 4
        assert np.array_equal(d, 1.0 + ties[:, 1] ** 2)


def test_nearest_is_the_same_with_one_or_two_blas_threads() -> None:
    from threadpoolctl import threadpool_limits

    from clusterqc.pool.kmeans import nearest

    rng = np.random.default_rng(9)
    c = rng.standard_normal((150, 256)).astype(np.float32)
    x = rng.standard_normal((20000, 256)).astype(np.float32)
    with threadpool_limits(1):
        one = nearest(x, c)
    with threadpool_limits(2):
        two = nearest(x, c)
    assert np.array_equal(one[0], two[0]) and one[1].tobytes() == two[1].tobytes()


def test_single_file_input_refuses_an_output_over_itself(tmp_path: Path) -> None:
    """The one-file path (clusterqc/clustering.py) goes through the same output check."""
    import shutil

    src = tmp_path / "emb.jsonl"
    shutil.copy(Path(__file__).parent / "fixtures" / "datacomp_small_sample_tsne.jsonl", src)
    before = src.read_bytes()
    code, _, err = run_cli("cluster", str(src), "--k", "5", "--id-col", "key", "--emb-col", "clip_tsne",
                           "--out", str(tmp_path / "c.json"), "--assignments", str(src))
    assert code == 1 and "that is the input INPUT" in err
    assert src.read_bytes() == before and not (tmp_path / "c.json").exists()
