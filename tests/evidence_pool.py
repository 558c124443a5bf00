"""A small pool with real evidence: the demo clusters with DataComp-small's real CLIP scores.

`data/demo_clusters.json` and `data/demo_assignments.csv` give each of the 5,868 sample keys a
cluster; tests/fixtures/datacomp_small_clip_scores.csv gives its real CLIP L/14 score (x100 in
that file, a cosine here). From those: a cluster file whose clusters carry `stats` and whose
samples carry `clip_score`, and a DataComp-layout assignments Parquet (uid, cluster_id,
distance, clip_l14_similarity_score, clip_b32_similarity_score). A key becomes a 32-hex-digit
uid by zero-padding, so the pool also works with export-uids and check-subset.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SCORES = ROOT / "tests" / "fixtures" / "datacomp_small_clip_scores.csv"


def uid_of(key: str) -> str:
    return key.rjust(32, "0")


def build(folder: Path, clusters: list[int] | None = None) -> tuple[Path, Path]:
    """(cluster file, assignments file) in `folder`; `clusters` limits the cluster file (all 60 by default)."""
    scores = {row["key"]: float(row["clip_score"]) / 100 for row in csv.DictReader(SCORES.open(encoding="utf-8"))}
    with (ROOT / "data" / "demo_assignments.csv").open(encoding="utf-8", newline="") as fh:
        assigned = [(row["uid"], int(row["cluster_label"])) for row in csv.DictReader(fh)]
    demo = json.loads((ROOT / "data" / "demo_clusters.json").read_text(encoding="utf-8"))
    total = len(assigned)
    by_cluster: dict[int, list[float]] = {}
    for key, label in assigned:
        by_cluster.setdefault(label, []).append(scores[key])
    out = {}
    for name, value in demo.items():
        n = int(name.split("_")[1])
        if clusters is not None and n not in clusters:
            continue
        values = np.array(by_cluster[n])
        q1, median, q3 = (float(x) for x in np.percentile(values, [25, 50, 75]))
        out[name] = {
            "closest_samples": [{**s, "uid": uid_of(s["uid"]), "clip_score": scores[s["uid"]]} for s in value["closest_samples"]],
            "furthest_samples": [{**s, "uid": uid_of(s["uid"]), "clip_score": scores[s["uid"]]} for s in value["furthest_samples"]],
            "stats": {"size": len(values), "share": len(values) / total, "clip_l14_mean": float(values.mean()),
                      "clip_l14_q1": q1, "clip_l14_median": median, "clip_l14_q3": q3},
        }
    cluster_file = folder / "evidence_clusters.json"
    cluster_file.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    rng = np.random.default_rng(0)
    l14 = np.array([scores[k] for k, _ in assigned])
    table = pa.table({
        "uid": [uid_of(k) for k, _ in assigned],
        "cluster_id": [f"Cluster_{c}" for _, c in assigned],
        "distance": rng.random(total),
        "clip_l14_similarity_score": l14,
        "clip_b32_similarity_score": l14 - 0.01,
    })
    assignments = folder / "assignments.parquet"
    pq.write_table(table, assignments)
    return cluster_file, assignments


if __name__ == "__main__":  # python tests/evidence_pool.py OUTDIR: the README's evidence walk-through
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    for written in build(target):
        print(f"wrote {written}")
