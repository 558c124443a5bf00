"""Benchmark `clusterqc cluster POOL_DIR` against the original pipeline's procedure.

    /work/venv/bin/python bench/bench_cluster.py                       # 400k x 768, k=150, + memory at --big-rows
    /work/venv/bin/python bench/bench_cluster.py --rows 100000 --big-rows 0 --repeats 1   # quick look

A synthetic pool in DataComp's layout (tests/pool_fixtures.py: shards of --shard-rows rows,
`<stem>.parquet` with DataComp's metadata columns + `<stem>.npz` with float16 `l14_txt`; only
the array clustered is written, to spare disk) with --k planted clusters in groups of five
neighbours. Pools are cached under --work (regenerated when the parameters change).

The baseline is the original luvdatacomp `cluster.py` procedure, re-implemented here as a
command of this script (`baseline` subcommand), since that repository is not vendored:
sklearn `MiniBatchKMeans(n_clusters=k, random_state=seed)` `.partial_fit` on each shard's
l14_txt in turn; then per shard `predict` + `scipy cdist` (euclidean) to the centroids; each
cluster's 5 closest / 5 furthest taken from the first shard that holds the cluster; outputs
a luvdatacomp JSON and a `uid,cluster_label` CSV. Ours is `python -m clusterqc cluster`.
Both run as whole commands in a child process: wall seconds, CPU seconds and peak RSS
(ru_maxrss from wait4), median over --repeats, alternating baseline/ours within a repeat
so machine load hits both alike. The 1-minute load average is printed.

Quality, computed here from each command's written centroids over the whole pool (float64):
inertia (sum of squared distances to the nearest centroid) and adjusted Rand index of the
nearest-centroid labels against the planted clusters.

Then: k-means++ against faiss's random initialisation with --nredo chosen to take at least
the k-means++ run's time (equal time), on the same pool; peak memory of ours at --rows and
--big-rows; the assignment kernel's GFLOP/s (2 n k d per shard, `nearest`) next to numpy
matmul of the same shapes (n x d @ d x k), median of 5, in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

PY = sys.executable
N_SHOWN = 5


# --------------------------------------------------------------------------- the pool


def make_pool(work: Path, rows: int, shard_rows: int, k: int, dim: int, seed: int) -> Path:
    """The cached pool folder for these parameters (pool/ + truth.npy beside it)."""
    from pool_fixtures import write_pool

    tag = f"pool-{rows}-{shard_rows}-{k}-{dim}-{seed}"
    base = work / tag
    if (base / "truth.npy").exists():
        return base
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    shards = [shard_rows] * (rows // shard_rows) + ([rows % shard_rows] if rows % shard_rows else [])
    t = time.perf_counter()
    pool = write_pool(base / "pool", shards, k=k, l14_dim=dim, seed=seed, arrays=("l14_txt",))
    np.save(base / "truth.npy", pool.planted)
    print(f"  wrote {rows:,} rows in {len(shards)} shards to {base} in {time.perf_counter() - t:.0f} s", flush=True)
    return base


def shards_of(pool: Path) -> list[str]:
    return sorted(p.stem for p in pool.glob("*.parquet"))


def load_x(pool: Path, stem: str) -> np.ndarray:
    with np.load(pool / f"{stem}.npz") as z:
        return z["l14_txt"].astype(np.float32)


# --------------------------------------------------------------------------- the baseline command


def baseline(pool: Path, out: Path, k: int, seed: int) -> None:
    """The original pipeline's procedure (see the module docstring); writes out/{clusters.json,labels.csv,centroids.npy}."""
    import pyarrow.parquet as pq
    from scipy.spatial.distance import cdist
    from sklearn.cluster import MiniBatchKMeans

    out.mkdir(parents=True, exist_ok=True)
    stems = shards_of(pool)
    km = MiniBatchKMeans(n_clusters=k, random_state=seed)
    for stem in stems:
        km.partial_fit(load_x(pool, stem))
    clusters: dict[str, dict] = {}
    with open(out / "labels.csv", "w", encoding="utf-8") as fh:
        fh.write("uid,cluster_label\n")
        for stem in stems:
            x = load_x(pool, stem)
            meta = pq.read_table(pool / f"{stem}.parquet", columns=["uid", "text"]).to_pydict()
            labels = km.predict(x)
            dist = cdist(x, km.cluster_centers_)
            for n in np.unique(labels):
                name = f"Cluster_{n}"
                if name in clusters:
                    continue  # the first shard holding the cluster decides, as in the original
                members = np.flatnonzero(labels == n)
                order = members[np.argsort(dist[members, n])]
                pick = lambda idx: [{"text": meta["text"][i], "uid": meta["uid"][i]} for i in idx]  # noqa: E731
                clusters[name] = {"closest_samples": pick(order[:N_SHOWN]),
                                  "furthest_samples": pick(order[::-1][:N_SHOWN])}
            fh.writelines(f"{u},{c}\n" for u, c in zip(meta["uid"], labels.tolist()))
    (out / "clusters.json").write_text(json.dumps(clusters, indent=2), encoding="utf-8")
    np.save(out / "centroids.npy", km.cluster_centers_.astype(np.float32))


# --------------------------------------------------------------------------- measuring


def run_measured(args: list[str]) -> dict:
    """Run a command in a child; wall, CPU seconds and peak RSS (MB) from its own rusage (wait4), and its stderr."""
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.environ["PYTHONPATH"] = str(ROOT)
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        log = os.open(str(Path("/tmp") / f"bench_cluster_{os.getpid()}.err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 2)
        os.execv(args[0], args)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    err_path = Path("/tmp") / f"bench_cluster_{pid}.err"
    err = err_path.read_text(errors="replace") if err_path.exists() else ""
    err_path.unlink(missing_ok=True)
    if status != 0:
        raise SystemExit(f"command failed ({status}): {' '.join(args)}\n{err}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "stderr": err}


def quality(pool: Path, centroids: np.ndarray, truth: np.ndarray) -> dict:
    """Inertia and ARI vs planted labels of nearest-centroid labels, over the whole pool (float64)."""
    from sklearn.metrics import adjusted_rand_score

    c = centroids.astype(np.float64)
    cc = (c * c).sum(1)
    labels, inertia = [], 0.0
    for stem in shards_of(pool):
        x = load_x(pool, stem).astype(np.float64)
        d = (x * x).sum(1)[:, None] - 2 * x @ c.T + cc[None, :]
        lab = d.argmin(1)
        inertia += float(np.maximum(d[np.arange(len(x)), lab], 0).sum())
        labels.append(lab)
    return {"inertia": inertia, "ari": adjusted_rand_score(truth, np.concatenate(labels))}


def ours_cmd(pool: Path, out: Path, k: int, seed: int, extra: list[str] = ()) -> list[str]:
    return [PY, "-m", "clusterqc", "cluster", str(pool), "--k", str(k), "--seed", str(seed),
            "--out", str(out / "clusters.json"), "--assignments", str(out / "assign.parquet"),
            "--centroids", str(out / "centroids.npy"), *extra]


def seconds_line(stderr: str) -> str:
    return next((ln for ln in stderr.splitlines() if ln.startswith("seconds:")), "")


def gflops(pool: Path, k: int, dim: int, seed: int) -> dict:
    """GFLOP/s of `nearest` on one shard vs numpy matmul of the same shapes (median of 5)."""
    from clusterqc.pool.kmeans import nearest

    x = load_x(pool, shards_of(pool)[0])
    c = np.random.default_rng(seed).standard_normal((k, dim)).astype(np.float32)
    flop = 2.0 * len(x) * k * dim
    t_near, t_gemm = [], []
    for _ in range(5):
        t = time.perf_counter()
        nearest(x, c)
        t_near.append(time.perf_counter() - t)
        t = time.perf_counter()
        _ = x @ c.T
        t_gemm.append(time.perf_counter() - t)
    return {"n": len(x), "nearest": flop / statistics.median(t_near) / 1e9, "gemm": flop / statistics.median(t_gemm) / 1e9}


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    b = sub.add_parser("baseline", help="run only the re-implemented original procedure")
    b.add_argument("pool", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--k", type=int, default=150)
    b.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--big-rows", type=int, default=4_000_000, help="second pool for peak memory (0: skip)")
    ap.add_argument("--shard-rows", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=150)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nredo", type=int, nargs="*", default=None, help="faiss random-init nredo values to try")
    ap.add_argument("--work", type=Path, default=Path("/tmp/clusterqc-bench-cluster"))
    args = ap.parse_args()
    if args.cmd == "baseline":
        baseline(args.pool, args.out, args.k, args.seed)
        return
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores shared with other work)", flush=True)
    base = make_pool(work, args.rows, args.shard_rows, args.k, args.dim, args.seed)
    pool, truth = base / "pool", np.load(base / "truth.npy")
    runs: dict[str, list[dict]] = {"baseline": [], "ours": []}
    for r in range(args.repeats):
        for name in ("baseline", "ours"):
            out = work / f"out-{name}"
            cmd = ([PY, str(Path(__file__).resolve()), "baseline", str(pool), str(out), "--k", str(args.k),
                    "--seed", str(args.seed)] if name == "baseline" else ours_cmd(pool, out, args.k, args.seed))
            m = run_measured(cmd)
            runs[name].append(m)
            print(f"  repeat {r + 1} {name:8s}: {m['wall']:6.1f} s wall, {m['cpu']:6.1f} s CPU, peak {m['rss_mb']:5.0f} MB"
                  + (f"  ({seconds_line(m['stderr'])})" if name == "ours" else ""), flush=True)
    q = {name: quality(pool, np.load(work / f"out-{name}" / "centroids.npy"), truth) for name in runs}
    med = {name: {key: statistics.median(m[key] for m in runs[name]) for key in ("wall", "cpu", "rss_mb")} for name in runs}
    print(f"\n## {args.rows:,} x {args.dim}, k={args.k}, {len(shards_of(pool))} shards; median of {args.repeats}")
    print("| command | wall s | CPU s | peak RSS MB | inertia | ARI vs planted |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in runs:
        print(f"| {name} | {med[name]['wall']:.1f} | {med[name]['cpu']:.1f} | {med[name]['rss_mb']:.0f} |"
              f" {q[name]['inertia']:.1f} | {q[name]['ari']:.4f} |")
    print(f"speed: {med['baseline']['wall'] / med['ours']['wall']:.2f}x wall, {med['baseline']['cpu'] / med['ours']['cpu']:.2f}x CPU;"
          f" inertia ours/baseline {q['ours']['inertia'] / q['baseline']['inertia']:.4f}", flush=True)

    # k-means++ vs faiss random init at equal time
    pp_time = med["ours"]["wall"]
    print("\n## initialisation at equal time (whole command, one run each)")
    print("| init | wall s | train s | inertia | ARI |")
    print("|---|---:|---:|---:|---:|")
    line = seconds_line(runs["ours"][-1]["stderr"])
    print(f"| k-means++ (default) | {pp_time:.1f} | {line} | {q['ours']['inertia']:.1f} | {q['ours']['ari']:.4f} |")
    for nredo in args.nredo or [1, 2, 3]:
        out = work / f"out-random-{nredo}"
        m = run_measured(ours_cmd(pool, out, args.k, args.seed, ["--init", "random", "--nredo", str(nredo)]))
        qr = quality(pool, np.load(out / "centroids.npy"), truth)
        print(f"| random, nredo {nredo} | {m['wall']:.1f} | {seconds_line(m['stderr'])} | {qr['inertia']:.1f} | {qr['ari']:.4f} |",
              flush=True)

    g = gflops(pool, args.k, args.dim, args.seed)
    print(f"\n## assignment kernel on one shard ({g['n']:,} x {args.dim} against {args.k} centroids)")
    print(f"nearest (BLAS product, argmin, direct-distance recheck): {g['nearest']:.1f} GFLOP/s; numpy matmul same shapes: {g['gemm']:.1f} GFLOP/s"
          f" ({g['nearest'] / g['gemm']:.0%} of GEMM)")
    assign_s = [float(part.split()[1]) for m in runs["ours"] for part in seconds_line(m["stderr"])[9:].split(", ")
                if part.startswith("assign")]
    if assign_s:
        whole = 2.0 * args.rows * args.k * args.dim / statistics.median(assign_s) / 1e9
        print(f"whole assignment pass incl. reading, writing, stats: {whole:.1f} GFLOP/s (median {statistics.median(assign_s):.1f} s)")

    if args.big_rows:
        bigbase = make_pool(work, args.big_rows, args.shard_rows, args.k, args.dim, args.seed)
        m = run_measured(ours_cmd(bigbase / "pool", work / "out-big", args.k, args.seed))
        print(f"\n## peak memory: {args.rows:,} rows {med['ours']['rss_mb']:.0f} MB; {args.big_rows:,} rows {m['rss_mb']:.0f} MB"
              f" ({m['wall']:.0f} s wall; {seconds_line(m['stderr'])})")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
