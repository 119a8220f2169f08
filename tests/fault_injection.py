"""Deterministic faults for resume tests: send a signal to this process after a chosen batch.

Used in-process and from the CLI (``distill.callbacks=[{_target_:tests.fault_injection.SignalAtStep,...}]``).
Registered before the checkpoint callback (Lightning runs checkpoint callbacks last), so at
``step`` the signal arrives before that step's checkpoint would be written.
"""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    """After the ``batch_in_step``-th batch (1-based) of optimizer step ``step + 1``, send ``signal``.

    ``batch_in_step=0`` fires right after optimizer step ``step`` completed; a larger value lands in
    the middle of the next accumulation window. ``rank=None`` signals every rank.
    """

    def __init__(self, step: int, signal: str = "SIGKILL", batch_in_step: int = 0, rank: int | None = None) -> None:
        self.step, self.signal_name, self.batch_in_step, self.rank = step, signal, batch_in_step, rank
        self._batches_after_step = -1
        self._fired = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._fired or trainer.global_step < self.step:
            return
        self._batches_after_step += 1  # 0 on the batch that completed `step`
        if self._batches_after_step == self.batch_in_step and self.rank in (None, trainer.global_rank):
            self._fired = True
            os.kill(os.getpid(), getattr(signal, self.signal_name))
