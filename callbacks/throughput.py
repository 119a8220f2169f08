"""Tokens per second of the training loop (all ranks together), logged as ``train/tokens_per_sec``."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class TokenThroughput(L.Callback):
    """Counts the non-pad tokens of each training batch (``batch["n_tokens"]``, a Python int).

    The window restarts at every log step, so the value is the recent rate, not an average
    diluted by start-up. Timing reads the host clock; on GPU the step already synchronises when
    the loss is checked for NaN, so no extra ``cuda.synchronize`` is needed.
    """

    def __init__(self, window_steps: int | None = None) -> None:
        self.window_steps = window_steps
        self._tokens = 0
        self._batches = 0
        self._t0: float | None = None
        self.history: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restart()

    def _restart(self) -> None:
        self._tokens, self._batches, self._t0 = 0, 0, time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._tokens += int(batch["n_tokens"]) * trainer.world_size
        self._batches += 1
        every = self.window_steps or trainer.log_every_n_steps
        if self._batches >= every and self._t0 is not None:
            elapsed = time.perf_counter() - self._t0
            rate = self._tokens / max(elapsed, 1e-9)
            self.history.append(rate)
            pl_module.log("train/tokens_per_sec", rate, on_step=True, on_epoch=False, rank_zero_only=True)
            self._restart()
