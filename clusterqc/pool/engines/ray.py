"""The Ray engine: the same step functions as Ray tasks, one per shard, results in shard order.

Why it looks the way it does:
- It joins the cluster named by RAY_ADDRESS when that is set (`ray.init()` reads it), reuses
  a Ray already initialised in this process (tests start one with 2 CPUs), and otherwise
  starts a local Ray. Only a Ray it started is shut down by `close`.
- At most `window` tasks are unfinished or unconsumed at once, so the driver holds a bounded
  number of shard results however big the pool; results are yielded in item order so the
  outputs (assignments file row order, merged partials) are the local engine's exactly.
- Large shared arguments (the centroids) go to the object store once (`put`), not once per task.
- A step's own error (a bad shard) is re-raised as itself, without Ray's wrapping, so the
  command prints the same one line as with the local engine. `timeout` bounds the wait for
  any one task to finish, so a stuck cluster fails instead of hanging.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any

from clusterqc.pool.progress import Progress


class RayEngineError(RuntimeError):
    """Ray itself failed (cannot connect, a worker died, a task timed out)."""


class RayEngine:
    name = "ray"

    def __init__(self, progress: bool = True, interval: float = 5.0, window: int | None = None,
                 timeout: float | None = None, num_cpus: int | None = None):
        import ray

        self.ray = ray
        self.progress, self.interval, self.timeout = progress, interval, timeout
        self.started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                       "log_to_driver": False}
            if not os.environ.get("RAY_ADDRESS") and num_cpus is not None:
                options["num_cpus"] = num_cpus
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayEngineError(f"cannot start or reach Ray ({os.environ.get('RAY_ADDRESS') or 'local'}): {exc}") from None
            self.started = True
        self.where = ray.get_runtime_context().gcs_address  # the cluster actually joined (or started)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.window = window or max(2, 2 * cpus)
        self._remote: dict[Callable[..., Any], Any] = {}

    def put(self, value: Any) -> Any:
        return self.ray.put(value)

    def _task(self, fn: Callable[..., Any]) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(num_cpus=1, max_retries=0)(fn)
        return self._remote[fn]

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], *args: Any, desc: str = "",
        rows: Sequence[int] | None = None, total: int | None = None,
    ) -> Iterator[Any]:
        """fn(item, *args) per item as Ray tasks, yielded in item order.

        `items` may be a generator (the CSV export streams batches); it is pulled only as the
        window frees up, so the driver never holds more than `window` items in flight.
        """
        task = self._task(fn)
        count = len(items) if isinstance(items, Sized) else total or 0
        bar = Progress(desc, sum(rows or ()), count, interval=self.interval, enabled=self.progress)
        source = iter(items)
        refs: dict[int, Any] = {}
        done: set[int] = set()
        index_of: dict[Any, int] = {}
        submitted = consumed = 0
        exhausted = False
        try:
            while True:
                while not exhausted and submitted - consumed < self.window:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    ref = task.remote(item, *args)
                    refs[submitted] = ref
                    index_of[ref] = submitted
                    submitted += 1
                if consumed == submitted:
                    break
                if consumed not in done:
                    waiting = [r for i, r in refs.items() if i not in done]
                    ready, _ = self.ray.wait(waiting, num_returns=1, timeout=self.timeout)
                    if not ready:
                        raise RayEngineError(f"{desc or 'ray'}: no task finished within {self.timeout} s")
                    for r in ready:
                        i = index_of.pop(r)
                        done.add(i)
                        bar.update(rows[i] if rows else 0)
                    continue
                result = self._get(refs.pop(consumed))
                done.discard(consumed)
                consumed += 1
                yield result
        finally:
            bar.close()
            for ref in refs.values():
                self.ray.cancel(ref, force=True)

    def _get(self, ref: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self.ray.get(ref, timeout=self.timeout)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise RayEngineError(str(exc)) from None
        except self.ray.exceptions.RayError as exc:
            raise RayEngineError(f"ray: {exc}") from None

    def close(self) -> None:
        """Shut down the Ray this engine started (not one it joined or was given)."""
        if self.started:
            self.ray.shutdown()
            self.started = False
