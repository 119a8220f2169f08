"""The worker pool behind the demo: thread count, logs reaching the parent, errors, laziness."""

from __future__ import annotations

import logging
import sys

import pytest

from domain_distil.common.workers import WorkerPool, resolve_workers


def _probe(value: int) -> dict:
    import torch

    logging.getLogger("domain_distil.probe").warning("worker saw %d", value)
    return {"threads": torch.get_num_threads(), "tty": sys.stdout.isatty(), "value": value * 2}


def _fail() -> None:
    raise ValueError("bad job 7")


def test_resolve_workers() -> None:
    assert resolve_workers(3, 1) == 3
    assert resolve_workers("auto", 1) >= 1
    assert resolve_workers(None, 10_000) == 1  # never zero workers
    with pytest.raises(ValueError, match="workers must be >= 1"):
        resolve_workers(0, 1)
    with pytest.raises(ValueError, match="threads_per_worker"):
        resolve_workers(2, 0)


@pytest.mark.slow
def test_jobs_run_single_threaded_log_to_the_parent_and_raise(caplog) -> None:
    caplog.set_level(logging.INFO)
    with WorkerPool(2, 1) as pool:
        results = [pool.submit(_probe, n).result(timeout=120) for n in (1, 2, 3)]
        failing = pool.submit(_fail)
        with pytest.raises(ValueError, match="bad job 7"):
            failing.result(timeout=120)
    assert [r["value"] for r in results] == [2, 4, 6]
    assert all(r["threads"] == 1 for r in results)
    assert not any(r["tty"] for r in results)  # progress is logged as lines, not drawn as bars
    messages = [r.getMessage() for r in caplog.records if r.name == "domain_distil.probe"]
    assert sorted(messages) == ["worker saw 1", "worker saw 2", "worker saw 3"]  # once each, no duplicates


def test_a_pool_with_nothing_to_do_starts_no_process() -> None:
    with WorkerPool(2, 1) as pool:
        assert pool._pool is None
    assert pool._pool is None and pool._listener is None
