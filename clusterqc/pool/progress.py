"""Progress for the long passes: a tqdm bar on a terminal, a plain line every few seconds elsewhere.

A job under nohup, cron or a Ray submission writes to a log, where a bar's carriage returns
turn into one unreadable line (tqdm disables itself there, leaving nothing), so off a TTY the
same counts are printed as a line every `interval` seconds and once at the end.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


class Progress:
    """Rows and shards done out of a known total; `update` after each shard."""

    def __init__(
        self, desc: str, total_rows: int, total_shards: int, stream: IO[str] | None = None,
        interval: float = 5.0, enabled: bool = True,
    ):
        self.desc, self.total_rows, self.total_shards = desc, total_rows, total_shards
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.enabled = interval, enabled
        self.rows = self.shards = 0
        self.start = self.last = time.monotonic()
        self.bar: Any = None
        self.printed: tuple[int, int] | None = None
        if enabled and _is_tty(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total_rows, desc=desc, unit="row", unit_scale=True, file=self.stream,
                            dynamic_ncols=True, leave=True)

    def update(self, rows: int) -> None:
        self.rows += rows
        self.shards += 1
        if self.bar is not None:
            self.bar.update(rows)
            self.bar.set_postfix_str(f"{self.shards}/{self.total_shards} shards", refresh=False)
        elif self.enabled and time.monotonic() - self.last >= self.interval:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        self.printed = (self.shards, self.rows)
        pct = 100 * self.rows / self.total_rows if self.total_rows else 100.0
        print(
            f"{self.desc}: {self.shards}/{self.total_shards} shards, {self.rows:,}/{self.total_rows:,} rows"
            f" ({pct:.0f}%), {self.last - self.start:.0f} s",
            file=self.stream, flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.printed != (self.shards, self.rows):
            self._line()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
