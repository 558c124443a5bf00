"""The local engine: the steps in a loop in this process, one shard in memory at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any

from clusterqc.pool.progress import Progress


class LocalEngine:
    """Runs each step call in turn; `put` is the identity (there is nothing to ship)."""

    name = "local"

    def __init__(self, progress: bool = True, interval: float = 5.0):
        self.progress, self.interval = progress, interval

    def put(self, value: Any) -> Any:
        return value

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], *args: Any, desc: str = "",
        rows: Sequence[int] | None = None, total: int | None = None,
    ) -> Iterator[Any]:
        """fn(item, *args) per item, in order; progress advances by rows[i] after item i."""
        count = len(items) if isinstance(items, Sized) else total or 0
        bar = Progress(desc, sum(rows or ()), count, interval=self.interval, enabled=self.progress)
        try:
            for i, item in enumerate(items):
                result = fn(item, *args)
                bar.update(rows[i] if rows else 0)
                yield result
        finally:
            bar.close()

    def close(self) -> None:
        """Nothing to release."""
