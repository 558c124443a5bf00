"""A run on its own thread that the app polls and can stop: the propose batch, the learned judge.

Why a thread and not the page script itself: a Streamlit rerun (any click, including Stop)
interrupts the script, which would cut a run short and drop its work in flight. A job goes on
across reruns; the page only reads what the job exposes and sets `cancel`.
"""

from __future__ import annotations

import threading
from typing import TypeVar

_Job = TypeVar("_Job", bound="BackgroundJob")


class BackgroundJob:
    """Start, poll, stop and wait; a subclass does its work in `_run` and checks `cancel`."""

    def __init__(self, name: str) -> None:
        self.cancel = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self: _Job) -> _Job:
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (tests, scripts); True if it has."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:  # pragma: no cover - every job defines its own
        raise NotImplementedError
