"""Tokens per second of the training loop, summed over every rank, logged as ``train/tokens_per_sec``,
and the share of the batches' positions that were padding."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
import torch

from domain_distil.common.progress import PlainProgress, is_terminal

log = logging.getLogger("domain_distil.progress")


class TokenThroughput(L.Callback):
    """Counts the non-pad tokens of each training batch (``batch["n_tokens"]``, a Python int).

    Every ``window_steps`` batches (default: the trainer's ``log_every_n_steps``) each rank's count
    for the window is summed over all ranks with one all-reduce (``trainer.strategy.reduce``), so
    the logged rate is what the whole job processed, measured, not rank 0's count times the world
    size: ranks may see batches of different lengths. The window restarts at every log step, so
    the value is the recent rate, not an average diluted by start-up.

    ``run_average`` is the whole fit's rate: all ranks' tokens over the wall time from
    ``on_train_start`` to ``on_train_end`` (the part of the run this process executed, so after a
    resume it covers the resumed part). It is what a run manifest should record, with
    ``run_padding_share``: 1 - real tokens / positions of the padded batches (``batch["n_positions"]``),
    the compute spent on padding; None when a batch did not say its padded size.

    Timing reads the host clock after the all-reduce: the collective makes every rank wait for
    the slowest one (and on GPU, reading its result waits for the device), so each window ends at
    the same moment everywhere and no extra ``cuda.synchronize`` is needed.
    """

    def __init__(self, window_steps: int | None = None, plain_interval_s: float = 30.0) -> None:
        if window_steps is not None and window_steps < 1:
            raise ValueError(f"TokenThroughput: window_steps must be >= 1 or None, got {window_steps}")
        self.window_steps = window_steps
        self._tokens = 0  # this rank's tokens in the current window
        self._positions = 0  # this rank's padded positions in the current window
        self._batches = 0
        self._t0: float | None = None
        self._run_tokens = 0  # all ranks' tokens since on_train_start
        self._run_t0: float | None = None
        self._run_positions = 0
        self._positions_known = True  # every batch so far said its padded size
        self.history: list[float] = []
        self.run_tokens: int | None = None
        self.run_seconds: float | None = None
        self.run_average: float | None = None
        self.run_padding_share: float | None = None
        # Rich bars never reach a log file (nohup, SLURM, Hydra's job log): when stdout is not a
        # terminal, rank 0 also logs a plain line every plain_interval_s (tokens, tokens/s, ETA).
        self.plain_interval_s = plain_interval_s
        self._plain: PlainProgress | None = None

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run_tokens, self._run_positions, self._run_t0 = 0, 0, time.perf_counter()
        self._positions_known = True
        self.run_tokens = self.run_seconds = self.run_average = self.run_padding_share = None
        if trainer.is_global_zero and not is_terminal(sys.stdout):
            self._plain = PlainProgress("distil", lambda line: log.info("%s", line), self.plain_interval_s)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The previous epoch's unfinished window still counts towards the run (every rank starts
        # the epoch, so the collective is matched); only its rate goes unlogged.
        self._add_window_to_run(trainer, pl_module)
        self._restart()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._tokens += int(batch["n_tokens"])
        positions = batch.get("n_positions")
        self._positions_known = self._positions_known and positions is not None
        self._positions += int(positions or 0)
        self._batches += 1
        every = self.window_steps or trainer.log_every_n_steps
        if self._batches >= every and self._t0 is not None:
            tokens = self._add_window_to_run(trainer, pl_module)
            elapsed = time.perf_counter() - self._t0
            rate = tokens / max(elapsed, 1e-9)
            self.history.append(rate)
            # Every rank holds the same summed value, so rank 0 logging it loses nothing.
            pl_module.log("train/tokens_per_sec", rate, on_step=True, on_epoch=False, rank_zero_only=True)
            if self._plain is not None:
                self._plain.update(fraction=self._fraction(trainer, pl_module), tokens=self._run_tokens)
            self._restart()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._run_t0 is None:
            return
        # The tokens of the last, unfinished window; every rank reaches this hook, so the
        # collective is matched.
        self._add_window_to_run(trainer, pl_module)
        self._tokens = self._positions = 0
        self.run_seconds = time.perf_counter() - self._run_t0
        self.run_tokens = self._run_tokens
        self.run_average = self.run_tokens / max(self.run_seconds, 1e-9)
        if self._positions_known and self._run_positions > 0:
            self.run_padding_share = 1.0 - self._run_tokens / self._run_positions
        if self._plain is not None:
            self._plain.update(tokens=self._run_tokens)
            self._plain.close()
            self._plain = None

    # -- helpers -------------------------------------------------------------------------------
    def _restart(self) -> None:
        self._tokens, self._positions, self._batches, self._t0 = 0, 0, 0, time.perf_counter()

    def _add_window_to_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        """Adds the window's tokens and positions, summed over ranks, to the run's; returns the tokens."""
        tokens, positions = self._sum_over_ranks(trainer, pl_module, self._tokens, self._positions)
        self._run_tokens += tokens
        self._run_positions += positions
        return tokens

    @staticmethod
    def _fraction(trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
        """Share of the optimizer steps done (the module's own schedule length when it has one)."""
        total = pl_module.total_optimizer_steps() if hasattr(pl_module, "total_optimizer_steps") else trainer.max_steps
        return trainer.global_step / total if total and total > 0 else None

    @staticmethod
    def _sum_over_ranks(trainer: L.Trainer, pl_module: L.LightningModule, *counts: int) -> tuple[int, ...]:
        """One all-reduce (sum) of the counts as int64 on the module's device; a no-op on a single process."""
        if trainer.world_size == 1:
            return counts
        summed = torch.tensor(counts, dtype=torch.int64, device=pl_module.device)
        return tuple(int(v) for v in trainer.strategy.reduce(summed, reduce_op="sum").tolist())
