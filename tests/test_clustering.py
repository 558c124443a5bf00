"""`cluster_embeddings` on the real DataComp-small sample: every sample assigned once, closest and
furthest really ordered by distance (recomputed here with numpy), deterministic, importable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterqc.clustering import ClusteringError, cluster_embeddings
from clusterqc.ingest import IngestError, read_clusters

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "fixtures" / "datacomp_small_sample_tsne.jsonl"
K = 60


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("cluster")
    result = cluster_embeddings(
        SAMPLE, K, "key", "caption", "clip_tsne", out / "clusters.json", out / "assignments.csv", seed=0
    )
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    return {"result": result, "out": out, "rows": rows}


def test_every_sample_is_assigned_exactly_once(run: dict) -> None:
    rows, out = run["rows"], run["out"]
    with (out / "assignments.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["uid", "data_points", "cluster_label"]
        assigned = list(reader)
    assert [a["uid"] for a in assigned] == [r["key"] for r in rows]
    assert [a["data_points"] for a in assigned] == [r["caption"] for r in rows]
    labels = [int(a["cluster_label"]) for a in assigned]
    assert set(labels) <= set(range(K))
    clusters = json.loads((out / "clusters.json").read_text(encoding="utf-8"))
    counts = {f"Cluster_{n}": labels.count(n) for n in set(labels)}
    assert {cid: c["size"] for cid, c in clusters.items()} == counts
    assert sum(c["size"] for c in clusters.values()) == len(rows)


def test_closest_and_furthest_are_ordered_by_distance(run: dict) -> None:
    result, rows = run["result"], run["rows"]
    x = np.array([r["clip_tsne"] for r in rows], dtype=np.float64)
    centroids = np.asarray(result.centroids, dtype=np.float64)
    dist = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)  # n x k, recomputed here
    index = {r["key"]: i for i, r in enumerate(rows)}
    # each sample sits in its nearest centroid's cluster
    nearest = dist.min(axis=1)
    own = dist[np.arange(len(rows)), result.labels]
    assert np.allclose(own, nearest, rtol=1e-4, atol=1e-3)
    clusters = json.loads((run["out"] / "clusters.json").read_text(encoding="utf-8"))
    assert len(clusters) == K
    for cid, c in clusters.items():
        n = int(cid.split("_")[1])
        members = np.flatnonzero(result.labels == n)
        member_d = np.sort(dist[members, n])
        closest = [dist[index[s["uid"]], n] for s in c["closest_samples"]]
        furthest = [dist[index[s["uid"]], n] for s in c["furthest_samples"]]
        assert all(result.labels[index[s["uid"]]] == n for s in c["closest_samples"] + c["furthest_samples"])
        assert closest == sorted(closest) and furthest == sorted(furthest, reverse=True)
        shown = min(5, len(members))
        assert len(closest) == len(furthest) == shown
        assert np.allclose(closest, member_d[:shown], rtol=1e-4, atol=1e-3)
        assert np.allclose(furthest, member_d[::-1][:shown], rtol=1e-4, atol=1e-3)
        for s in c["closest_samples"] + c["furthest_samples"]:
            assert s["text"] == rows[index[s["uid"]]]["caption"]


def test_same_seed_reproduces_the_committed_demo(run: dict) -> None:
    out = run["out"]
    assert (out / "clusters.json").read_bytes() == (ROOT / "data" / "demo_clusters.json").read_bytes()
    assert (out / "assignments.csv").read_bytes() == (ROOT / "data" / "demo_assignments.csv").read_bytes()


def test_output_is_an_importable_luvdatacomp_file(run: dict) -> None:
    clusters = read_clusters(run["out"] / "clusters.json")
    assert len(clusters) == K and all(c.closest and c.furthest and c.size for c in clusters)
    assert all(s.uid for c in clusters for s in c.samples)


def test_parquet_in_and_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0], [-10.0, 10.0, 0.0]])
    x = np.concatenate([c + rng.normal(size=(20, 3)) for c in centers])
    src = tmp_path / "emb.parquet"
    pq.write_table(
        pa.table({"uid": [f"{i:032x}" for i in range(60)], "text": [f"t{i}" for i in range(60)], "emb": x.tolist()}),
        src,
    )
    result = cluster_embeddings(src, 3, "uid", "text", "emb", tmp_path / "c.json", tmp_path / "a.parquet")
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.column_names == ["uid", "data_points", "cluster_label"]
    labels = table.column("cluster_label").to_pylist()
    assert sorted(labels.count(n) for n in range(3)) == [20, 20, 20]  # three well separated blobs
    assert labels == result.labels.tolist()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n: int) -> list[dict]:
    return [{"uid": f"u{i}", "caption": f"c{i}", "emb": [float(i), float(i % 3)]} for i in range(n)]


@pytest.mark.parametrize(
    "case,data,k,fragments",
    [
        ("missing column", rows(3)[:2] + [{"uid": "u2", "emb": [1.0, 2.0]}], 2, ["line 3", "missing column 'caption'"]),
        ("k > n", rows(4), 5, ["k=5", "4 samples"]),
        ("k < 1", rows(4), 0, ["k must be at least 1"]),
        ("wrong shape", rows(3) + [{"uid": "u9", "caption": "c", "emb": [1.0, 2.0, 3.0]}], 2, ["line 4", "3 values", "have 2"]),
        ("not numbers", rows(2) + [{"uid": "u9", "caption": "c", "emb": ["a", 1]}], 2, ["line 3", "finite numbers"]),
        ("nan", rows(2) + [{"uid": "u9", "caption": "c", "emb": [float("nan"), 1]}], 2, ["line 3", "finite numbers"]),
        ("duplicate id", rows(3) + [{"uid": "u1", "caption": "c", "emb": [1.0, 2.0]}], 2, ["sample 4", "duplicate uid 'u1'"]),
        ("caption not text", rows(2) + [{"uid": "u9", "caption": 5, "emb": [1.0, 2.0]}], 2, ["line 3", "caption must be a string"]),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    case: str, data: list[dict], k: int, fragments: list[str], tmp_path: Path
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", data)
    with pytest.raises(ClusteringError) as err:
        cluster_embeddings(src, k, "uid", "caption", "emb", tmp_path / "out.json", tmp_path / "a.csv")
    assert isinstance(err.value, IngestError) and str(err.value).startswith(str(src))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "a.csv").exists()


def test_malformed_jsonl_line_is_named(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(rows(1)[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ClusteringError, match="line 2: malformed JSON"):
        cluster_embeddings(src, 1, "uid", "caption", "emb", tmp_path / "o.json", None)


def test_parquet_bad_vectors_name_the_row(tmp_path: Path) -> None:
    """The fast Arrow path hands ragged or null vectors to the row-by-row check, which names the row."""
    for name, emb, fragment in [
        ("ragged", [[1.0, 2.0], [1.0, 2.0, 3.0], [0.0, 1.0]], "row 2: emb has 3 values"),
        ("null", [[1.0, 2.0], [3.0, 4.0], [1.0, None]], "row 3: emb must hold finite numbers"),
        ("nan", [[1.0, 2.0], [float("nan"), 4.0], [1.0, 1.0]], "row 2: emb must hold finite numbers"),
    ]:
        src = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"uid": ["a", "b", "c"], "text": ["x", "y", "z"], "emb": emb}), src)
        with pytest.raises(ClusteringError, match=fragment):
            cluster_embeddings(src, 2, "uid", "text", "emb", tmp_path / "o.json", None)
