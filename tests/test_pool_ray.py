"""The Ray engine (local mode, 2 CPUs) gives the local engine's results exactly.

One Ray for the module (started in the fixture, shut down after); every engine wait has a
timeout, and a faulthandler watchdog ends a run that hangs anyway, so CI cannot stall here.
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.clustering import ClusteringError
from clusterqc.pool import cluster_pool
from clusterqc.pool.engines.local import LocalEngine
from clusterqc.pool.subset import build_subset_on
from clusterqc.subset import SubsetError, build_subset, save_uids
from pool_fixtures import PlantedPool, write_pool

ray = pytest.importorskip("ray")
TIMEOUT = 120.0
K = 6


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[object]:
    from clusterqc.pool.engines.ray import RayEngine

    faulthandler.dump_traceback_later(600, exit=True, file=sys.stderr)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayEngine(progress=False, timeout=TIMEOUT, window=3)
    finally:
        ray.shutdown()
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> PlantedPool:
    return write_pool(tmp_path_factory.mktemp("pool") / "pool", [200, 310, 5, 260, 150], k=K,
                      l14_dim=20, b32_dim=12, seed=11)


def _run(pool: PlantedPool, out: Path, engine: object) -> object:
    return cluster_pool(str(pool.root), out / "c.json", k=K, assignments=out / "a.parquet",
                        centroids_out=out / "c.npy", engine=engine)


def test_ray_gives_the_local_engines_files_byte_for_byte(pool: PlantedPool, ray_engine, tmp_path: Path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    _run(pool, tmp_path / "local", LocalEngine(progress=False))
    _run(pool, tmp_path / "ray", ray_engine)
    for name in ("c.json", "a.parquet", "c.npy"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert pq.read_table(tmp_path / "ray" / "a.parquet").column("uid").to_pylist() == pool.uids


def test_a_bad_shard_fails_on_ray_with_the_same_message(pool: PlantedPool, ray_engine, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "pool"
    shutil.copytree(pool.root, root)
    data = (root / "00000003.npz").read_bytes()
    (root / "00000003.npz").write_bytes(data[: len(data) // 2])  # header fine, data truncated
    messages = []
    for engine in (LocalEngine(progress=False), ray_engine):
        with pytest.raises(ClusteringError) as err:
            cluster_pool(str(root), tmp_path / "c.json", k=K, assignments=tmp_path / "a.parquet", engine=engine)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "shard 00000003" in messages[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool"]


@pytest.fixture(scope="module")
def labelled(pool: PlantedPool, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store with the pool's clusters, some reviewed, and the pool's assignments file."""
    from clusterqc.model import Cluster, Proposal, Sample, Verdict
    from clusterqc.store import Store

    out = tmp_path_factory.mktemp("labelled")
    cluster_pool(str(pool.root), out / "c.json", k=K, assignments=out / "a.parquet", engine=LocalEngine(progress=False))
    store = Store(out / "db.sqlite")
    store.import_clusters([Cluster(f"Cluster_{i}", (Sample("c"),), (Sample("f"),)) for i in range(K)], source="t")
    for i, v in enumerate([Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE, Verdict.ACCEPTABLE, Verdict.ACCEPTABLE]):
        store.decide(f"Cluster_{i}", "ann", v)
    store.add_proposal(Proposal("Cluster_4", "m", "v1", Verdict.ACCEPTABLE, "r"))
    return {"store": store, "assign": out / "a.parquet", "out": out}


@pytest.mark.parametrize("unreviewed", [False, True])
def test_export_uids_on_ray_is_byte_identical(labelled: dict, ray_engine, tmp_path: Path, unreviewed: bool) -> None:
    store, assign = labelled["store"], labelled["assign"]
    # several row groups, so the Parquet is really cut into chunks
    pq.write_table(pq.read_table(assign), tmp_path / "a.parquet", row_group_size=97)
    table = pq.read_table(assign).select(["uid", "cluster_id"])
    pacsv.write_csv(table.set_column(1, "cluster_id", table.column("cluster_id").cast(pa.string())), tmp_path / "a.csv")
    local = build_subset(store, assign, include_unreviewed=unreviewed)
    save_uids(local.uids, tmp_path / "local.npy")
    assert 0 < local.kept_samples < local.total_samples
    for name in ("a.parquet", "a.csv"):
        got = build_subset_on(ray_engine, store, tmp_path / name, include_unreviewed=unreviewed, batch_rows=150)
        save_uids(got.uids, tmp_path / f"ray-{name}.npy")
        assert (tmp_path / f"ray-{name}.npy").read_bytes() == (tmp_path / "local.npy").read_bytes(), name
        assert (got.kept_clusters, got.dropped_clusters, got.unlabelled_clusters, got.total_samples) == (
            local.kept_clusters, local.dropped_clusters, local.unlabelled_clusters, local.total_samples)


def test_export_uids_on_ray_names_a_bad_uid_row(labelled: dict, ray_engine, tmp_path: Path) -> None:
    table = pq.read_table(labelled["assign"])
    uids = table.column("uid").to_pylist()
    uids[400] = "not-a-uid"
    pq.write_table(table.set_column(0, "uid", pa.array(uids)), tmp_path / "bad.parquet", row_group_size=97)
    with pytest.raises(SubsetError) as local_err:
        build_subset(labelled["store"], tmp_path / "bad.parquet")
    with pytest.raises(SubsetError) as ray_err:
        build_subset_on(ray_engine, labelled["store"], tmp_path / "bad.parquet", batch_rows=150)
    assert str(ray_err.value) == str(local_err.value) and "row 401" in str(ray_err.value)


def test_export_uids_cli_with_engine_ray(labelled: dict, ray_engine, tmp_path: Path) -> None:
    """The command joins the Ray already running in this process (as it would join RAY_ADDRESS)."""
    args = ["export-uids", "--db", str(labelled["out"] / "db.sqlite"), "--assignments", str(labelled["assign"])]
    local = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "local.npy")], catch_exceptions=False)
    on_ray = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "ray.npy"), "--engine", "ray"],
                                catch_exceptions=False)
    assert local.exit_code == on_ray.exit_code == 0, on_ray.stderr
    assert (tmp_path / "ray.npy").read_bytes() == (tmp_path / "local.npy").read_bytes()
    assert ray.is_initialized()  # a joined Ray is left running for its owner
    loaded = np.load(tmp_path / "ray.npy")
    assert loaded.dtype == np.dtype("u8,u8") and len(loaded) > 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, deadline: float) -> None:
    import socket
    import time

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"ray head on port {port} did not come up")


@pytest.mark.slow  # a real `ray start` takes a while on a shared machine
def test_the_command_joins_the_cluster_named_by_ray_address(pool: PlantedPool, tmp_path: Path) -> None:
    """A real `ray start --head` in its own process group; the CLI (a separate process) joins it."""
    import os
    import signal
    import subprocess
    import tempfile
    import time

    root = Path(__file__).resolve().parent.parent
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rq", dir="/tmp")  # Ray's socket paths must stay short
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "PYTHONPATH": str(root), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _wait_for_port(port, time.monotonic() + TIMEOUT)
        args = [sys.executable, "-m", "clusterqc", "cluster", str(pool.root), "--k", str(K)]
        on_ray = subprocess.run(
            [*args, "--engine", "ray", "--out", str(tmp_path / "r.json"), "--assignments", str(tmp_path / "r.parquet")],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, capture_output=True, text=True, timeout=TIMEOUT,
        )
        assert on_ray.returncode == 0, on_ray.stderr
        assert f":{port}]" in on_ray.stdout  # the GCS address the engine is connected to
        local = subprocess.run(
            [*args, "--out", str(tmp_path / "l.json"), "--assignments", str(tmp_path / "l.parquet")],
            env=env, capture_output=True, text=True, timeout=TIMEOUT,
        )
        assert local.returncode == 0, local.stderr
        assert (tmp_path / "r.parquet").read_bytes() == (tmp_path / "l.parquet").read_bytes()
        assert (tmp_path / "r.json").read_bytes() == (tmp_path / "l.json").read_bytes()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)


@pytest.mark.parametrize("which", ["top", "min"])
def test_export_uids_with_a_clip_cut_on_ray_is_byte_identical(labelled: dict, ray_engine, tmp_path: Path,
                                                               which: str) -> None:
    """A CLIP-score cut (issue 14) keeps the same samples on Ray, for Parquet row groups and CSV batches."""
    from clusterqc.subset import SCORE_COLUMN, ScoreCut

    store, assign = labelled["store"], labelled["assign"]
    table = pq.read_table(assign)
    scores = table.column(SCORE_COLUMN).to_numpy()
    cut = ScoreCut(top_fraction=0.3) if which == "top" else ScoreCut(clip_min=float(np.median(scores)))
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=97)
    small = table.select(["uid", "cluster_id", SCORE_COLUMN])
    pacsv.write_csv(small.set_column(1, "cluster_id", small.column("cluster_id").cast(pa.string())), tmp_path / "a.csv")
    local = build_subset(store, assign, cut=cut)
    assert 0 < local.kept_samples < local.cut_alone_samples < local.total_samples
    save_uids(local.uids, tmp_path / "local.npy")
    for name in ("a.parquet", "a.csv"):
        got = build_subset_on(ray_engine, store, tmp_path / name, batch_rows=150, cut=cut)
        save_uids(got.uids, tmp_path / f"ray-{name}.npy")
        assert (tmp_path / f"ray-{name}.npy").read_bytes() == (tmp_path / "local.npy").read_bytes(), name
        assert (got.cut_value, got.cut_alone_samples, got.kept_clusters, got.total_samples) == (
            local.cut_value, local.cut_alone_samples, local.kept_clusters, local.total_samples), name
