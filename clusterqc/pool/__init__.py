"""Clustering a DataComp pool in its own layout, streamed shard by shard, on one machine or Ray.

shards.py reads and checks the layout; kmeans.py trains and assigns; steps.py holds the
per-shard steps and the exact merge of their partial stats; run.py orders the work;
engines/ schedules the steps (local loop or Ray tasks); subset.py runs the uid export's
per-chunk work through an engine.
"""

from clusterqc.pool.run import PoolResult, cluster_pool
from clusterqc.pool.shards import ARRAYS, Embedding, is_pool, open_pool

__all__ = ["ARRAYS", "Embedding", "PoolResult", "cluster_pool", "is_pool", "open_pool"]
