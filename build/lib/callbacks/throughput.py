"""Tokens per second of the training loop, summed over every rank, logged as ``train/tokens_per_sec``."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


class TokenThroughput(L.Callback):
    """Counts the non-pad tokens of each training batch (``batch["n_tokens"]``, a Python int).

    Every ``window_steps`` batches (default: the trainer's ``log_every_n_steps``) each rank's count
    for the window is summed over all ranks with one all-reduce (``trainer.strategy.reduce``), so
    the logged rate is what the whole job processed, measured, not rank 0's count times the world
    size: ranks may see batches of different lengths. The window restarts at every log step, so
    the value is the recent rate, not an average diluted by start-up.

    ``run_average`` is the whole fit's rate: all ranks' tokens over the wall time from
    ``on_train_start`` to ``on_train_end`` (the part of the run this process executed, so after a
    resume it covers the resumed part). It is what a run manifest should record.

    Timing reads the host clock after the all-reduce: the collective makes every rank wait for
    the slowest one (and on GPU, reading its result waits for the device), so each window ends at
    the same moment everywhere and no extra ``cuda.synchronize`` is needed.
    """

    def __init__(self, window_steps: int | None = None) -> None:
        if window_steps is not None and window_steps < 1:
            raise ValueError(f"TokenThroughput: window_steps must be >= 1 or None, got {window_steps}")
        self.window_steps = window_steps
        self._tokens = 0  # this rank's tokens in the current window
        self._batches = 0
        self._t0: float | None = None
        self._run_tokens = 0  # all ranks' tokens since on_train_start
        self._run_t0: float | None = None
        self.history: list[float] = []
        self.run_tokens: int | None = None
        self.run_seconds: float | None = None
        self.run_average: float | None = None

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run_tokens, self._run_t0 = 0, time.perf_counter()
        self.run_tokens = self.run_seconds = self.run_average = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restart()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._tokens += int(batch["n_tokens"])
        self._batches += 1
        every = self.window_steps or trainer.log_every_n_steps
        if self._batches >= every and self._t0 is not None:
            tokens = self._sum_over_ranks(trainer, pl_module, self._tokens)
            elapsed = time.perf_counter() - self._t0
            self._run_tokens += tokens
            rate = tokens / max(elapsed, 1e-9)
            self.history.append(rate)
            # Every rank holds the same summed value, so rank 0 logging it loses nothing.
            pl_module.log("train/tokens_per_sec", rate, on_step=True, on_epoch=False, rank_zero_only=True)
            self._restart()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._run_t0 is None:
            return
        # The tokens of the last, unfinished window; every rank reaches this hook, so the
        # collective is matched.
        self._run_tokens += self._sum_over_ranks(trainer, pl_module, self._tokens)
        self._tokens = 0
        self.run_seconds = time.perf_counter() - self._run_t0
        self.run_tokens = self._run_tokens
        self.run_average = self.run_tokens / max(self.run_seconds, 1e-9)

    # -- helpers -------------------------------------------------------------------------------
    def _restart(self) -> None:
        self._tokens, self._batches, self._t0 = 0, 0, time.perf_counter()

    @staticmethod
    def _sum_over_ranks(trainer: L.Trainer, pl_module: L.LightningModule, tokens: int) -> int:
        """One all-reduce (sum) of an int64 on the module's device; a no-op on a single process."""
        if trainer.world_size == 1:
            return tokens
        count = torch.tensor(tokens, dtype=torch.int64, device=pl_module.device)
        return int(trainer.strategy.reduce(count, reduce_op="sum").item())
