"""Progress of a long pass: a rich bar on a terminal, plain periodic log lines everywhere else (under
``nohup``, a scheduler or Hydra's job log a bar's redraws vanish or fill the file).

``report.update(fraction=done / total, tokens=n_tokens)`` takes cumulative values, never increments,
so a caller cannot double count; ``fraction`` (0..1, None when unknown) drives the percentage and ETA.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TextIO

log = logging.getLogger("domain_distil.progress")


def human(value: float) -> str:
    """1234567 -> '1.23M' (SI prefixes; counts of tokens, bytes, documents)."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    return f"{value:.0f}"


def eta_text(elapsed_s: float, fraction: float | None) -> str:
    """Time left at the average rate so far, as H:MM:SS ('?' when it cannot be known yet)."""
    if fraction is None or fraction <= 0 or elapsed_s <= 0:
        return "?"
    remaining = elapsed_s * (1.0 - min(fraction, 1.0)) / fraction
    return str(timedelta(seconds=round(remaining)))


class PlainProgress:
    """Logs ``description: 45.0% | 1.23M tokens (40.1k tokens/s) | 2.00G bytes (...) | ETA 0:01:10``."""

    def __init__(self, description: str, emit: Callable[[str], None], interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.emit, self.interval_s, self.clock = description, emit, interval_s, clock
        self.start = clock()
        self.last_line = self.start
        self.fraction: float | None = None
        self.counters: dict[str, float] = {}

    def update(self, fraction: float | None = None, **counters: float) -> None:
        self.fraction = fraction if fraction is not None else self.fraction
        self.counters.update(counters)
        now = self.clock()
        if now - self.last_line >= self.interval_s:
            self.last_line = now
            self.emit(self.line(now))

    def line(self, now: float, done: bool = False) -> str:
        elapsed = max(now - self.start, 1e-9)
        parts = [self.description]
        if self.fraction is not None and not done:
            parts.append(f"{100 * min(self.fraction, 1.0):.1f}%")
        parts += [f"{human(v)} {k} ({human(v / elapsed)} {k}/s)" for k, v in self.counters.items()]
        parts.append(f"done in {timedelta(seconds=round(elapsed))}" if done else f"ETA {eta_text(elapsed, self.fraction)}")
        return " | ".join(parts)

    def close(self) -> None:
        self.emit(self.line(self.clock(), done=True))


class RichProgress:
    """One rich bar (total 1.0) whose text shows the counters."""

    def __init__(self, description: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[counters]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=Console(file=stream))
        self.start = time.monotonic()
        self.task = self.progress.add_task(description, total=None, counters="")
        self.progress.start()

    def update(self, fraction: float | None = None, **counters: float) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        text = " ".join(f"{human(v)} {k} ({human(v / elapsed)}/s)" for k, v in counters.items())
        done = {} if fraction is None else {"total": 1.0, "completed": min(fraction, 1.0)}
        self.progress.update(self.task, counters=text, **done)

    def close(self) -> None:
        self.progress.stop()


def _emitter(logger: logging.Logger, stream: TextIO) -> Callable[[str], None]:
    if logger.hasHandlers() and logger.isEnabledFor(logging.INFO):
        return lambda line: logger.info("%s", line)
    return lambda line: print(line, file=stream, flush=True)


def is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


@contextmanager
def progress(description: str, *, interval_s: float = 30.0, stream: TextIO | None = None,
             logger: logging.Logger = log) -> Iterator[PlainProgress | RichProgress]:
    """A rich bar when ``stream`` (default: stdout) is a terminal, else plain lines every ``interval_s``.

    Plain lines go to ``logger`` at INFO when logging is set up (Hydra's console and job log), and
    straight to ``stream`` otherwise, so a bare script under ``nohup`` still shows them.
    """
    stream = stream if stream is not None else sys.stdout
    reporter: PlainProgress | RichProgress = (
        RichProgress(description, stream) if is_terminal(stream)
        else PlainProgress(description, _emitter(logger, stream), interval_s))
    try:
        yield reporter
    finally:
        reporter.close()


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """:func:`progress` of a pass over ``total`` bytes, as the ``update(bytes_done)`` a reader calls."""
    with progress(description) as report:
        yield lambda done: report.update(fraction=done / total if total else None, bytes=done)
