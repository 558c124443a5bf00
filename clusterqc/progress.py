"""Progress for long CLI runs: tqdm on a terminal, a plain line every few seconds otherwise.

Why it is configured rather than left to tqdm's defaults: `disable=None` turns tqdm off when
stderr is not a terminal, so a run under cron, nohup, CI or `2>log` said nothing for minutes
and looked hung. Here a terminal gets tqdm's usual bar; anything else gets the same status as
whole lines (no carriage returns, no bar characters) every `LOG_INTERVAL_S` seconds
(`$CLUSTERQC_PROGRESS_INTERVAL` changes it). Neither shows anything for the first
seconds (2 on a terminal, one interval otherwise), so a quick run prints only its result
(the README's examples show exactly what such runs print).

`ticking()` keeps the line coming while one long call (k-means, one big file) blocks the
loop that would otherwise update the bar.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 5.0  # seconds between lines when stderr is a file or a pipe
ENV_INTERVAL = "CLUSTERQC_PROGRESS_INTERVAL"  # overrides LOG_INTERVAL_S (e.g. 60 for a quieter log)
TTY_INTERVAL_S = 0.1
DELAY_S = 2.0  # on a terminal, nothing is shown for a run shorter than this


def log_interval() -> float:
    """Seconds between progress lines when not on a terminal: $CLUSTERQC_PROGRESS_INTERVAL, else 5."""
    try:
        value = float(os.environ.get(ENV_INTERVAL, LOG_INTERVAL_S))
    except ValueError:
        return LOG_INTERVAL_S
    return value if value > 0 else LOG_INTERVAL_S


class LineWriter:
    """A file for tqdm that turns its carriage-return redraws into one plain line each."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def bar(total: float | None = None, desc: str | None = None, unit: str = "it", stream: TextIO | None = None,
        delay: float | None = None, disable: bool = False, **kwargs: Any) -> tqdm:
    """A progress bar on `stream` (stderr): tqdm's bar on a terminal, a line every few seconds otherwise."""
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    every = log_interval()
    delay = (DELAY_S if tty else every) if delay is None else delay
    options: dict[str, Any] = (
        {"file": stream, "mininterval": TTY_INTERVAL_S, "dynamic_ncols": True}
        if tty
        else {"file": LineWriter(stream), "mininterval": every, "maxinterval": every,
              "ncols": 0, "ascii": True}  # ncols=0: the counts and rate only, no bar
    )
    progress = tqdm(total=total, desc=desc, unit=unit, delay=delay, disable=disable, **options, **kwargs)
    progress.line_mode = not tty  # read by ticking()
    return progress


def stage(desc: str, stream: TextIO | None = None, delay: float | None = None) -> tqdm:
    """A progress line for a run made of a few long steps: `set_description_str` names the
    step, and the line reads "import: reading pool.jsonl (00:15 elapsed)"."""
    return bar(desc=desc, stream=stream, delay=delay, bar_format="{desc} ({elapsed} elapsed)")


def step(progress: tqdm, text: str) -> None:
    """Name the step a `stage` line is on; shown at once, unless the run is still in its first
    `delay` seconds (a quick run prints nothing)."""
    progress.set_description_str(text, refresh=False)
    if _past_delay(progress):
        progress.refresh()


def _past_delay(progress: tqdm) -> bool:
    return not progress.disable and progress.format_dict["elapsed"] >= progress.delay


@contextmanager
def ticking(progress: tqdm, every: float | None = None) -> Iterator[tqdm]:
    """Refresh `progress` every few seconds while the body runs one long call that cannot update it."""
    if every is None:
        every = log_interval() if getattr(progress, "line_mode", True) else 1.0
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            if _past_delay(progress):
                progress.refresh()

    thread = threading.Thread(target=tick, name="clusterqc-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join()
