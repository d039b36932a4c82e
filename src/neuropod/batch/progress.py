"""A progress bar with rows/s on stderr, with no dependency.

On a terminal the bar is redrawn in place, at most ten times a second; anywhere else (a log
file, CI) a line is printed every ``LOG_INTERVAL`` seconds and once at the end.

Hand-written rather than ``tqdm``: away from a terminal tqdm still redraws with carriage returns
(a log file or CI output gets one ever-growing line, not a line per interval), its rate and ETA
fields format differently from the bar that ``neuropod run`` has always drawn, and the whole of
what a batch run needs (a count, a rate, redraws that ``note`` can interrupt) is the hundred
lines below, with no dependency and no import cost.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24
LOG_INTERVAL = 10.0
_REDRAW_INTERVAL = 0.1


class Progress:
    """Counts rows done out of a total and shows them with the rate.

    Args:
        total: the rows to do.
        label: printed before the bar.
        stream: where to draw (default: ``sys.stderr``).
        enabled: ``False`` to draw nothing (``note`` is silent too).
    """

    def __init__(
        self, total: int, label: str = "neuropod", stream: TextIO | None = None, enabled: bool = True
    ):
        self.total = total
        self.done = 0
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._tty = enabled and _isatty(self._stream)
        self._start = time.perf_counter()
        self._last_draw = self._start
        self._width = 0

    def update(self, rows: int) -> None:
        """Count ``rows`` more rows as done."""
        self.done += rows
        if not self._enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw >= (_REDRAW_INTERVAL if self._tty else LOG_INTERVAL):
            self._draw(now)

    def note(self, message: str) -> None:
        """Print a line (an error of a batch) without breaking the bar."""
        if not self._enabled:
            return
        self._clear()
        print(message, file=self._stream, flush=True)
        if self._tty:
            self._draw(time.perf_counter())

    def close(self) -> None:
        """Draw the final state and end the line."""
        if not self._enabled:
            return
        self._draw(time.perf_counter(), final=True)
        if self._tty:
            print(file=self._stream, flush=True)
        self._enabled = False

    @property
    def rows_per_second(self) -> float:
        """The mean rate since the start."""
        elapsed = time.perf_counter() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def _draw(self, now: float, final: bool = False) -> None:
        self._last_draw = now
        line = self.render(now - self._start)
        if self._tty:
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self._stream.flush()
        elif final or self.done < self.total:
            print(line, file=self._stream, flush=True)

    def render(self, elapsed: float) -> str:
        """The bar as text after ``elapsed`` seconds."""
        fraction = self.done / self.total if self.total else 1.0
        filled = round(BAR_WIDTH * min(fraction, 1.0))
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = (
            f"eta {_clock(left)}" if left is not None and self.done < self.total else f"in {_clock(elapsed)}"
        )
        return (
            f"{self._label} {fraction:4.0%} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{self.done:,}/{self.total:,} rows  {rate:,.0f} rows/s  {eta}"
        )

    def _clear(self) -> None:
        if self._tty and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._width = 0


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
