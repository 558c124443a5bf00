"""k-means on the training sample, and nearest-centroid assignment with exact distances.

Why it looks the way it does:
- Lloyd iterations are faiss's (`faiss.Kmeans`, BLAS-backed, the tool DataComp's own baseline
  uses); only the initialisation is ours. faiss starts from k random sample points, which on
  clustered data often puts two seeds in one cluster and none in another, and Lloyd cannot
  repair that. Greedy k-means++ (Arthur & Vassilvitskii; the variant scikit-learn uses, with
  2 + ln k candidates per step) spreads the seeds. scikit-learn's own `kmeans_plusplus` took
  17 s for k=150 on 38,400 x 768 here (float64, one row at a time); this one scores all
  candidates of a step with one float32 matrix product, so many candidates cost little more
  than a few: on the planted pools of bench/bench_cluster.py (k=150, 768-d), 7 candidates
  (scikit-learn's 2 + ln k) gave ARI 0.91 after Lloyd, 20 gave 0.95, 50 gave 0.97; and a
  subsample of the training sample (`init_points`) seeds as well as all of it.
- Assignment ranks centroids by |c|^2 - 2x.c from one BLAS product, then recomputes the
  winner's squared L2 distance directly as sum((x - c)^2) in float32 (and the runner-up's,
  where the two are nearly tied). The product differs in its last bits with the number of
  BLAS threads (a Ray worker runs one, the local engine two; faiss's search too), and
  |x|^2 + |c|^2 - 2x.c can even go slightly negative; the direct distance is the same on
  every engine and is what the outputs rank by.
"""

from __future__ import annotations

import numpy as np

RECHECK_ROWS = 1024  # rows per block of the direct distance (a few MB: stays in cache)
SCORE_BYTES = 32 << 20  # n x k score block of the assignment product
NEAR_TIE = 1e-3


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
    trials: int | None = None,
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
        km.train(x, init_centroids=kmeans_pp(pick, k, seed, trials))
    else:
        raise ValueError(f"unknown init {init!r}")
    return np.ascontiguousarray(km.centroids, dtype=np.float32), float(km.obj[-1]) if len(km.obj) else float("nan")


def squared_distances(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """sum((x_i - c_label_i)^2) per row in float32, in cache-sized blocks."""
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), RECHECK_ROWS):
        stop = start + RECHECK_ROWS
        diff = x[start:stop] - centroids[labels[start:stop]]
        np.square(diff, out=diff)
        out[start:stop] = diff.sum(axis=1)
    return out


def nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 label, float32 squared L2 distance) of each row's nearest centroid; engine-independent.

    |c|^2 - 2 x.c by one BLAS product per block of rows (the block keeps the n x k scores
    under SCORE_BYTES even at k = 100,000); the winner's distance is then recomputed
    directly. Where the runner-up is within NEAR_TIE of the winner (relative to |x|^2 +
    |c|^2, a thousand times the float32 error of the product), the runner-up is recomputed
    too and the smaller exact distance wins (ties: lower id). The product's last bits vary
    with BLAS threads; the labels and distances written do not.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    k = len(c)
    cc = np.einsum("ij,ij->i", c, c)
    labels = np.empty(len(x), dtype=np.int32)
    near_tie = np.zeros(len(x), dtype=bool)
    runner_up = np.zeros(len(x), dtype=np.int32)
    block = max(1, SCORE_BYTES // (4 * k))
    for start in range(0, len(x), block):
        xb = x[start : start + block]
        scores = xb @ c.T
        scores *= -2
        scores += cc
        best = scores.argmin(axis=1)
        rows = np.arange(len(xb))
        labels[start : start + len(xb)] = best
        if k > 1:
            top = scores[rows, best].copy()
            scores[rows, best] = np.inf
            second = scores.argmin(axis=1)
            gap = scores[rows, second] - top
            scale = np.einsum("ij,ij->i", xb, xb) + cc.max()
            near_tie[start : start + len(xb)] = gap <= NEAR_TIE * scale
            runner_up[start : start + len(xb)] = second
    dist = squared_distances(x, c, labels)
    tied = np.flatnonzero(near_tie)
    if len(tied):
        other = runner_up[tied]
        d2 = squared_distances(x[tied], c, other)
        better = (d2 < dist[tied]) | ((d2 == dist[tied]) & (other < labels[tied]))
        labels[tied[better]] = other[better]
        dist[tied[better]] = d2[better]
    return labels, dist
