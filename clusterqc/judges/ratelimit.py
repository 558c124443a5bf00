"""Client-side requests-per-minute and tokens-per-minute limits, shared by the judge's threads.

Why on the client: an endpoint's 429s are honoured by the openai client's retries, but a team
with a known quota (or a shared local GPU) wants to stay under it rather than bounce off it.
Two token buckets, refilled continuously; each holds ten seconds' worth of its budget so a
batch starts promptly without bursting a whole minute's quota at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BURST_SECONDS = 10.0


class _Bucket:
    def __init__(self, per_minute: float, now: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_SECONDS)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` can be taken; a cost above capacity waits for a full bucket."""
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class RateLimiter:
    """Blocks `acquire` until both budgets allow one more request of the given size."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ):
        now = clock()
        self._requests = _Bucket(rpm, now) if rpm else None
        self._tokens = _Bucket(tpm, now) if tpm else None
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._requests is not None or self._tokens is not None

    def acquire(self, tokens: float = 0.0) -> float:
        """Wait for room for one request of about `tokens` tokens; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                pause = 0.0
                for bucket, cost in ((self._requests, 1.0), (self._tokens, tokens)):
                    if bucket is not None:
                        bucket.refill(now)
                        pause = max(pause, bucket.wait_for(cost))
                if pause <= 0:
                    if self._requests is not None:
                        self._requests.level -= 1.0
                    if self._tokens is not None:
                        self._tokens.level -= tokens
                    return waited
            self._sleep(pause)
            waited += pause

    def settle(self, estimated: float, actual: float) -> None:
        """Correct the token budget once the real usage is known (it may go below zero)."""
        if self._tokens is not None:
            with self._lock:
                self._tokens.level -= actual - estimated
