"""k-means on the training sample, and nearest-centroid assignment with exact distances.

Why it looks the way it does:
- Lloyd iterations are faiss's (`faiss.Kmeans`, BLAS-backed, the tool DataComp's own baseline
  uses); only the initialisation is ours. faiss starts from k random sample points, which on
  clustered data often puts two seeds in one cluster and none in another, and Lloyd cannot
  repair that. Greedy k-means++ (Arthur & Vassilvitskii; the variant scikit-learn uses, with
  2 + ln k candidates per step) spreads the seeds. scikit-learn's own `kmeans_plusplus` took
  17 s for k=150 on 38,400 x 768 here (float64, one row at a time); this one scores all
  candidates of a step with one float32 matrix product, and runs on a subsample of the
  training sample (`init_points`), which bench/bench_cluster.py shows costs no quality.
- Assignment asks faiss for the two nearest centroids, then recomputes both squared L2
  distances directly as sum((x - c)^2) in float32 and keeps the smaller (ties: lower id).
  faiss's |x|^2 + |c|^2 - 2x.c differs in the last bits with the number of BLAS threads
  (a Ray worker runs one, the local engine two), and can even go slightly negative; the
  direct distance is the same on every engine and is what the outputs rank by.
"""

from __future__ import annotations

import numpy as np

BLOCK_ROWS = 8192


def kmeans_pp(x: np.ndarray, k: int, seed: int, trials: int | None = None) -> np.ndarray:
    """k seeds from the rows of x by greedy k-means++ (float32; deterministic for a seed)."""
    n = len(x)
    rng = np.random.default_rng(seed)
    trials = trials or 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", x, x)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = np.maximum(sq - 2 * (x @ x[first]) + sq[first], 0)
    potential = float(closest.sum(dtype=np.float64))
    for c in range(1, k):
        if potential <= 0:  # fewer distinct points than k: repeat points, faiss splits later
            centers[c:] = x[rng.integers(n, size=k - c)]
            break
        cumulative = np.cumsum(closest, dtype=np.float64)
        candidates = np.minimum(np.searchsorted(cumulative, rng.random(trials) * cumulative[-1]), n - 1)
        d = sq[:, None] - 2 * (x @ x[candidates].T) + sq[candidates][None, :]
        np.maximum(d, 0, out=d)
        np.minimum(d, closest[:, None], out=d)
        potentials = d.sum(axis=0, dtype=np.float64)
        best = int(np.argmin(potentials))
        closest = np.ascontiguousarray(d[:, best])
        potential = float(potentials[best])
        centers[c] = x[candidates[best]]
    return centers


def train(
    x: np.ndarray,
    k: int,
    niter: int = 20,
    seed: int = 0,
    init: str = "k-means++",
    nredo: int = 1,
    init_points: int | None = None,
) -> tuple[np.ndarray, float]:
    """(k x d float32 centroids, training-sample inertia) after `niter` Lloyd iterations.

    `init` is "k-means++" (ours, on `init_points` rows drawn from x; all rows when None) or
    "random" (faiss's own, best of `nredo` runs).
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, nredo=nredo if init == "random" else 1,
        verbose=False, min_points_per_centroid=1, max_points_per_centroid=max(1, -(-len(x) // k)),
    )
    if init == "random":
        km.train(x)
    elif init == "k-means++":
        pick = x
        if init_points is not None and init_points < len(x):
            rows = np.sort(np.random.default_rng(seed).choice(len(x), init_points, replace=False))
            pick = x[rows]
        km.train(x, init_centroids=kmeans_pp(pick, k, seed))
    else:
        raise ValueError(f"unknown init {init!r}")
    return np.ascontiguousarray(km.centroids, dtype=np.float32), float(km.obj[-1]) if len(km.obj) else float("nan")


def squared_distances(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """sum((x_i - c_label_i)^2) per row in float32, block by block (bounded temporaries)."""
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        diff = x[start:stop] - centroids[labels[start:stop]]
        np.square(diff, out=diff)
        out[start:stop] = diff.sum(axis=1)
    return out


def nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 label, float32 squared L2 distance) of each row's nearest centroid; engine-independent."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    two = min(2, len(centroids))
    _, found = index.search(x, two)
    labels = found[:, 0].astype(np.int32)
    dist = squared_distances(x, centroids, labels)
    if two == 2:
        other = found[:, 1].astype(np.int32)
        dist2 = squared_distances(x, centroids, other)
        better = (dist2 < dist) | ((dist2 == dist) & (other < labels))
        labels[better] = other[better]
        dist[better] = dist2[better]
    return labels, dist
