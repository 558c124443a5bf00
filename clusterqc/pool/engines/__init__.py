"""Engines schedule the pool steps; they compute nothing themselves.

Both offer `map(fn, items, *args)`: fn(item, *args) for every item, results yielded in item
order, with progress counted in rows. `local` runs them in this process; `ray` as Ray tasks.
"""

from __future__ import annotations

from typing import Any

ENGINES = ("local", "ray")


def get_engine(name: str, **options: Any) -> Any:
    """The engine called `name` ("local" or "ray"); Ray is imported only when asked for."""
    if name == "local":
        from clusterqc.pool.engines.local import LocalEngine

        return LocalEngine(**options)
    if name == "ray":
        from clusterqc.pool.engines.ray import RayEngine

        return RayEngine(**options)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
