"""Cluster evidence at import: a cluster's `stats` object and a sample's `clip_score`.

Good values are stored and come back on `Cluster.stats` / `Sample.clip_score`; hostile numbers
(NaN, infinities, strings, booleans, x100 scores) are refused with the file and the place,
exit 1, no traceback and no database created.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.ingest import IngestError, read_files
from clusterqc.model import Cluster, Sample
from clusterqc.store import Store

STATS = {"size": 1200, "share": 0.0125, "clip_l14_mean": 0.2431, "clip_l14_q1": 0.2012,
         "clip_l14_median": 0.2456, "clip_l14_q3": 0.2874}


def luv(stats: object = None, score: object = None, raw_stats: str | None = None) -> str:
    """A luvdatacomp-format file text with one cluster; `raw_stats` is pasted in verbatim (NaN...)."""
    sample: dict[str, object] = {"text": "a red bicycle", "uid": "ab" * 16}
    if score is not None:
        sample["clip_score"] = score
    record: dict[str, object] = {"closest_samples": [sample, "a blue bicycle"], "furthest_samples": ["a pump"]}
    if stats is not None:
        record["stats"] = stats
    text = json.dumps({"Cluster_7": record}, indent=1)
    if raw_stats is not None:
        text = text.replace('"furthest_samples"', f'"stats": {raw_stats},\n "furthest_samples"')
    return text


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_stats_and_clip_scores_are_stored_and_exposed(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(luv(STATS, 0.3125), encoding="utf-8")
    db = tmp_path / "s.db"
    assert run("import", str(path), "--db", str(db))[0] == 0
    with Store(db) as store:
        cluster = store.get_cluster("Cluster_7")
        assert cluster is not None
        assert dict(cluster.stats or {}) == STATS
        assert cluster.size == 1200  # taken from stats.size when the file gives no size
        assert cluster.closest[0].clip_score == 0.3125 and cluster.closest[1].clip_score is None
        stored = store._one("SELECT content_hash FROM clusters WHERE id = 'Cluster_7'")[0]
        assert stored == cluster.content_hash()  # the import's fast hash is the model's hash
    # Same file again: unchanged (the hash is stable), and a changed stat needs --replace.
    assert "1 unchanged" in run("import", str(path), "--db", str(db))[1]
    path.write_text(luv({**STATS, "clip_l14_mean": 0.25}, 0.3125), encoding="utf-8")
    code, out = run("import", str(path), "--db", str(db))
    assert code == 1 and "different content" in out


def test_clusters_without_evidence_keep_their_old_hash() -> None:
    """Adding the stats field must not turn every existing cluster into new content (the hash
    m005_datasets gives: the dataset is the cluster's namespace, not part of its content)."""
    cluster = Cluster("C", (Sample("a"), Sample("b", uid="u")), (Sample("c"),), 3, "d")
    old_payload = json.dumps(
        {"closest": ["a", {"text": "b", "uid": "u"}], "furthest": ["c"], "size": 3},
        ensure_ascii=False, sort_keys=True,
    )
    import hashlib

    assert cluster.content_hash() == hashlib.sha256(old_payload.encode()).hexdigest()
    assert cluster.stats is None and cluster.closest[0].clip_score is None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"clip_l14_mean": NaN}', "stats.clip_l14_mean must be a finite number, got nan"),
        ('{"clip_l14_q3": Infinity}', "stats.clip_l14_q3 must be a finite number, got inf"),
        ('{"share": -Infinity}', "stats.share must be a finite number, got -inf"),
        ('{"clip_l14_mean": "0.24"}', "stats.clip_l14_mean must be a number, got a string '0.24'"),
        ('{"clip_l14_median": true}', "stats.clip_l14_median must be a number, got a boolean True"),
        ('{"size": true}', "stats.size must be a non-negative integer, got a boolean"),
        ('{"size": 12.5}', "stats.size must be a non-negative integer, got a number 12.5"),
        ('{"share": 1.5}', "stats.share must be between 0 and 1, got 1.5"),
        ('{"clip_l14_mean": 24.3}', "stats.clip_l14_mean must be between -1 and 1, got 24.3 (CLIP scores are cosines"),
        ('{"other": [1]}', "stats.other must be a number, got a list"),
        ('[0.2, 0.3]', "stats must be an object of numbers, got a list"),
    ],
)
def test_hostile_stats_are_refused_with_the_place(tmp_path: Path, raw: str, why: str) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(luv(raw_stats=raw), encoding="utf-8")
    db = tmp_path / "never.db"
    code, out = run("import", str(path), "--db", str(db))
    assert code == 1
    assert out.startswith(f"error: {path}: key 'Cluster_7' (line 2): ") and why in out, out
    assert out.count("\n") == 1 and "Traceback" not in out
    assert not db.exists()


@pytest.mark.parametrize("score", ["NaN", "Infinity", '"0.31"', "true", "31.2"])
def test_hostile_sample_scores_are_refused_with_the_place(tmp_path: Path, score: str) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(luv(score=0.5).replace("0.5", score), encoding="utf-8")
    code, out = run("import", str(path), "--db", str(tmp_path / "never.db"))
    assert code == 1 and "Traceback" not in out and out.count("\n") == 1
    assert f"{path}: key 'Cluster_7'" in out and "closest_samples[0].clip_score must be" in out, out


def test_size_and_stats_size_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    record = {"cluster_id": "A", "closest_samples": ["x"], "furthest_samples": ["y"], "size": 5, "stats": {"size": 6}}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"line 1 \(cluster 'A'\): size 5 differs from stats.size 6"):
        read_files([path])


def test_csv_and_parquet_carry_stats(tmp_path: Path) -> None:
    csv_path = tmp_path / "c.csv"
    cell = json.dumps(STATS).replace('"', '""')
    csv_path.write_text(
        'cluster_id,closest_samples,furthest_samples,stats\nA,"[""x""]","[""y""]","' + cell + '"\nB,"[""z""]","[""w""]",\n',
        encoding="utf-8",
    )
    (_, records), = read_files([csv_path])
    assert dict(records[0].stats) == STATS and records[1].stats is None

    sample = pa.struct([("text", pa.string()), ("uid", pa.string()), ("clip_score", pa.float64())])
    table = pa.table({
        "cluster_id": ["P"],
        "closest_samples": pa.array([[{"text": "x", "uid": "u1", "clip_score": 0.25}]], pa.list_(sample)),
        "furthest_samples": pa.array([[{"text": "y", "uid": "u2", "clip_score": None}]], pa.list_(sample)),
        "stats": pa.array([{k: float(v) for k, v in STATS.items()}]),
    })
    pq.write_table(table, tmp_path / "c.parquet")
    (_, records), = read_files([tmp_path / "c.parquet"])
    cluster = records[0].to_cluster()
    assert cluster.stats["clip_l14_q3"] == 0.2874 and cluster.size == 1200
    assert cluster.closest[0].clip_score == 0.25 and cluster.furthest[0].clip_score is None

    bad = table.set_column(3, "stats", pa.array([{"clip_l14_mean": float("nan")}]))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(IngestError, match=r"bad.parquet: row 1 \(cluster 'P'\): stats.clip_l14_mean must be a finite"):
        read_files([tmp_path / "bad.parquet"])
