"""Independent CPU work in a pool of single-threaded processes (why processes: docs/demo.md, step 4).

Workers are spawned (torch and tokenizers hold thread pools that do not survive a fork), log through
a queue into the parent's handlers, and see a standard output that is not a terminal, so progress is
logged as plain lines instead of live bars that two processes would draw over each other.
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

log = logging.getLogger(__name__)


def resolve_workers(workers: int | str | None, threads_per_worker: int) -> int:
    """``workers``: a number, or ``auto``/None for as many as the CPU has room for at
    ``threads_per_worker`` threads each (the cores this process may use)."""
    if threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
    if workers is None or str(workers).lower() == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // threads_per_worker)
    count = int(workers)
    if count < 1:
        raise ValueError(f"workers must be >= 1 or 'auto', got {workers!r}")
    return count


class _NotATerminal(io.TextIOBase):
    """Writes through to a stream but says it is no terminal (so progress is logged, not drawn)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()


class _ToParentLoggers(logging.Handler):
    """Hands a worker's record to the parent's logger of the same name (and so its handlers)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _init_worker(queue: Any, threads: int, level: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker, also in the tokenizer
    sys.stdout = _NotATerminal(sys.stdout)
    import lightning  # noqa: F401  (installs its console handlers now, so they can be removed below)

    # Every record goes to the parent through the root logger; a library's own console handler
    # (lightning adds one on import) would print each line a second time.
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate = True
    root = logging.getLogger()
    root.handlers = [QueueHandler(queue)]
    root.setLevel(level)


class WorkerPool:
    """A spawned process pool, started on the first :meth:`submit` (a run that finds all its work
    cached starts no process), with ``threads_per_worker`` torch threads in every worker."""

    def __init__(self, workers: int, threads_per_worker: int) -> None:
        self.workers, self.threads_per_worker = workers, threads_per_worker
        self._pool: ProcessPoolExecutor | None = None
        self._listener: QueueListener | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        if self._pool is None:
            context = mp.get_context("spawn")
            queue = context.Queue()
            self._listener = QueueListener(queue, _ToParentLoggers())
            self._listener.start()
            level = logging.getLogger().getEffectiveLevel()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                             initargs=(queue, self.threads_per_worker, level))
            log.info("started %d worker processes, %d torch thread(s) each", self.workers, self.threads_per_worker)
        return self._pool.submit(fn, *args)

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(cancel=kind is not None)
