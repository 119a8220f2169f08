"""Checkpoints that a distillation can always continue from exactly, including after SIGINT/SIGTERM.

``ResumableCheckpoint`` writes ``step{N:08d}.ckpt`` every ``every_n_train_steps`` optimizer steps
and keeps ``last.ckpt`` (a hard link to the newest one) plus ``last.json``, a small record of what
``last.ckpt`` holds. Three rules make ``last.ckpt`` a state to resume from:

* It is only ever written right after an optimizer step. Accumulated gradients are not part of a
  checkpoint, so a state saved in the middle of an accumulation window cannot be resumed exactly.
* It is never replaced once the loss or the weights went non-finite: after a NaN stop it still
  holds the last finite state and ``last.json`` says which step that is and where training stopped.
* SIGINT (Ctrl+C) and SIGTERM (preemption) do not kill training mid-step. The first signal asks
  every rank to stop; at the next optimizer step all ranks agree (one all-reduce per optimizer step),
  write ``last.ckpt`` and raise :class:`TrainingInterrupted` (exit status 128 + signal number). A
  second SIGINT interrupts at once, leaving the previous ``last.ckpt``. SIGKILL cannot be caught:
  it leaves the newest periodic checkpoint, which is why checkpoints are written atomically.

Atomically means in the checkpoint's own folder (:class:`FolderLocalCheckpointIO`): a temp file beside
the target, flushed and fsynced, then renamed. A save that fails (a full disk) removes its temp file,
leaves no partial ``step*.ckpt``, keeps ``last.ckpt`` and ``last.json`` at the previous step and
stops with :class:`CheckpointWriteError`, which names that step.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from domain_distil.common.errors import RunInterrupted, UserInputError
from domain_distil.common.io import atomic_open, write_json
from lightning_modules.distillation import NonFiniteLossError

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
LAST_RECORD = "last.json"
_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(SIGTERMException, RunInterrupted):
    """Training stopped on a signal after writing ``last.ckpt``; exits with status 128 + signal.

    A ``SystemExit`` (through Lightning's ``SIGTERMException``) so that no ``except Exception`` swallows
    it and the unfinished student is never exported; the command line prints its message
    (:class:`~domain_distil.common.errors.RunInterrupted`), from global rank 0 only.
    """

    def __init__(self, signum: int, step: int, path: Path, announce: bool = True) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.path, self.announce = signum, step, path, announce

    def __str__(self) -> str:
        return (
            f"{signal.Signals(self.signum).name} received: stopped at optimizer step {self.step}; "
            f"continue with ckpt_path=last ({self.path} holds that step)"
        )


class CheckpointWriteError(UserInputError):
    """A checkpoint could not be written (a full or read-only disk): nothing partial was left behind.

    A user-input error because the fix is the user's (free space, or point ``paths.cache_dir`` at a
    larger disk), so the command line prints the one-line message instead of Lightning's traceback.
    """


class FolderLocalCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temp file beside the checkpoint, flushed, fsynced and renamed over it.

    Lightning's default stages the file under the system temp folder (fsspec's transaction) and then
    moves it across file systems, so each save also needs the checkpoint's size free in ``/tmp``
    and a full target disk leaves a partial file under the final name. Here a failed write removes
    its temp file and whatever was at the path stays as it was. Used by :class:`ResumableCheckpoint`
    for local folders (it only replaces Lightning's default ``TorchCheckpointIO``).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (local folders only)")
        try:
            with atomic_open(path, "wb") as handle:
                torch.save(checkpoint, handle)
        except RuntimeError as error:
            # After a failed write (ENOSPC) torch's zip writer fails again while closing the archive
            # ("unexpected pos ...") and that RuntimeError hides the OSError: raise the cause instead.
            cause = error.__context__
            if not isinstance(cause, OSError):
                raise
            raise cause from error


def read_last_record(dirpath: str | Path) -> dict[str, Any] | None:
    """``last.json`` of a checkpoint folder: which step ``last.ckpt`` holds and why it was written."""
    path = Path(dirpath) / LAST_RECORD
    return json.loads(path.read_text()) if path.exists() else None


class ResumableCheckpoint(Checkpoint):
    def __init__(
        self,
        dirpath: str | Path | None = None,
        every_n_train_steps: int = 1000,
        keep_step_checkpoints: bool = True,
        handle_signals: bool = True,
    ) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"ResumableCheckpoint: every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.dirpath = dirpath  # may be set after construction, before fit (the stage names the folder late)
        self.every_n_train_steps = every_n_train_steps
        self.keep_step_checkpoints = keep_step_checkpoints
        self.handle_signals = handle_signals
        self.last_finite_step: int | None = None
        self.diverged_at_step: int | None = None
        self._requested_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._step_at_batch_start = 0
        self._local_nonfinite = False
        self._saved_on_signal = False

    @property
    def folder(self) -> Path:
        if self.dirpath is None:
            raise ValueError("ResumableCheckpoint.dirpath must be set before training starts")
        return Path(self.dirpath)

    @property
    def last_path(self) -> Path:
        return self.folder / LAST_CHECKPOINT

    # --- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._requested_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl+C: stop now, keep the previous last.ckpt
        if self._requested_signal is None:
            log.warning(
                "%s received: finishing the current optimizer step, then writing %s",
                signal.Signals(signum).name, self.last_path,
            )
        self._requested_signal = self._requested_signal or signum

    def _install_signal_handlers(self) -> None:
        # Only the main thread may set handlers. Lightning installed its own SIGTERM handler just
        # before on_train_start; it is put back on the way out (and Lightning then restores the
        # original ones in its teardown).
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for signum in _HANDLED_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    # --- hooks -----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a custom one (cloud storage) is kept
            trainer.strategy.checkpoint_io = FolderLocalCheckpointIO()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._requested_signal, self._saved_on_signal = None, False
        self._install_signal_handlers()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            self._local_nonfinite = True
        if trainer.global_step == self._step_at_batch_start:
            return  # inside an accumulation window: this state cannot be resumed exactly
        stop, nonfinite = self._agree(trainer, self._requested_signal is not None, self._local_nonfinite)
        step = trainer.global_step
        periodic = step % self.every_n_train_steps == 0
        if self.diverged_at_step is None and (nonfinite or ((stop or periodic) and not _finite_weights(pl_module))):
            self.diverged_at_step = step
            rank_zero_warn(
                f"Loss or weights became non-finite at optimizer step {step}: no further checkpoints are written; "
                f"{self.last_path} keeps step {self.last_finite_step} (see {LAST_RECORD})."
            )
            self._write_record(trainer, reason=None)
        if self.diverged_at_step is None and (stop or periodic):
            self._save(trainer, reason=_signal_name(self._requested_signal) if stop else "every_n_train_steps")
        if stop:
            signum = self._requested_signal or signal.SIGTERM  # another rank received it
            self._saved_on_signal = True
            raise TrainingInterrupted(signum, step, self.last_path, announce=trainer.is_global_zero)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signal_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signal_handlers()
        if self._saved_on_signal or isinstance(exception, CheckpointWriteError):
            return  # its own message already says where training stopped and what last.ckpt holds
        if self.diverged_at_step is None and isinstance(exception, NonFiniteLossError):
            self.diverged_at_step = trainer.global_step  # the step whose loss came out NaN/inf
        if self.diverged_at_step is not None:
            self._write_record(trainer, reason=None)
        finite = ", the last step whose loss and weights were finite" if self.diverged_at_step is not None else ""
        rank_zero_warn(
            f"Training stopped at optimizer step {trainer.global_step} ({type(exception).__name__}). "
            + (
                f"{self.last_path} holds step {self.last_finite_step}{finite}; resume from it with ckpt_path=last."
                if self.last_finite_step is not None
                else "No checkpoint was written yet."
            )
        )

    def state_dict(self) -> dict[str, Any]:
        return {"last_finite_step": self.last_finite_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_finite_step = state_dict.get("last_finite_step")

    # --- saving ----------------------------------------------------------------------------
    @staticmethod
    def _agree(trainer: L.Trainer, stop: bool, nonfinite: bool) -> tuple[bool, bool]:
        """Every rank must take the same decision at the same step, or the next collective deadlocks."""
        if trainer.world_size == 1:
            return stop, nonfinite
        flags = torch.tensor([float(stop), float(nonfinite)], device=trainer.strategy.root_device)
        flags = trainer.strategy.reduce(flags, reduce_op="max")
        return bool(flags[0].item()), bool(flags[1].item())

    def _save(self, trainer: L.Trainer, reason: str) -> None:
        """Write ``step{N}.ckpt``, point ``last.ckpt`` at it and update ``last.json``; every rank agrees
        on the outcome, and ``last_finite_step`` ends as the step ``last.ckpt`` really holds."""
        step = trainer.global_step
        held_before = self.last_finite_step
        # Set before the dump: it is part of the checkpoint's callback state, so the file names its
        # own step (a resume from it continues from there); put back below if the file never lands.
        self.last_finite_step = step
        target = self.folder / f"step{step:08d}.ckpt" if self.keep_step_checkpoints else self.last_path
        error = _write_checkpoint(trainer, target)
        if error is None and trainer.is_global_zero and target != self.last_path:
            error = self._point_last_at(target)
        held = held_before if error is not None else step
        if error is None:
            try:
                self._write_record(trainer, reason=reason)
            except OSError as record_error:  # last.ckpt already holds `step`; only last.json is stale
                error = record_error
        # One broadcast from rank 0 (the only writer) doubles as the barrier before training goes on.
        failure, held = trainer.strategy.broadcast((_describe(error), held), src=0)
        self.last_finite_step = held
        if failure is not None:
            raise CheckpointWriteError(
                f"could not write the checkpoint of optimizer step {step} in {self.folder}: {failure}. "
                + (f"{self.last_path} holds step {held}; " if held is not None else "No checkpoint was written yet; ")
                + "free space there (or point paths.cache_dir at a larger disk) and continue with ckpt_path=last."
            ) from error

    def _point_last_at(self, target: Path) -> OSError | None:
        """Swap ``last.ckpt`` for a hard link to ``target`` (a copy where links are unsupported) by one
        rename, so it is always one complete checkpoint; on failure it stays as it was."""
        temp = self.folder / f".{LAST_CHECKPOINT}.{os.getpid()}.tmp"
        temp.unlink(missing_ok=True)
        try:
            try:
                os.link(target, temp)
            except OSError:  # file systems without hard links
                shutil.copyfile(target, temp)
            os.replace(temp, self.last_path)
        except OSError as error:
            temp.unlink(missing_ok=True)
            return error
        return None

    def _write_record(self, trainer: L.Trainer, reason: str | None) -> None:
        if not trainer.is_global_zero:
            return
        previous = read_last_record(self.folder) or {}
        record = {
            "checkpoint": str(self.last_path),
            "step": self.last_finite_step,
            "epoch": previous.get("epoch") if reason is None else int(trainer.current_epoch),
            "reason": previous.get("reason") if reason is None else reason,
            "written": previous.get("written") if reason is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "diverged_at_step": self.diverged_at_step,
        }
        write_json(self.folder / LAST_RECORD, record)


def _write_checkpoint(trainer: L.Trainer, target: Path) -> OSError | None:
    """``trainer.save_checkpoint`` on every rank (the dump gathers every rank's RNG); only rank 0
    writes. A failed write is returned, not raised, after rank 0 joins the barrier it skipped, so
    that every rank reaches the same next collective."""
    try:
        trainer.save_checkpoint(target)
    except OSError as error:
        trainer.strategy.barrier("Trainer.save_checkpoint")
        return error
    return None


def _describe(error: OSError | None) -> str | None:
    """An OS error as one line (``[Errno 28] No space left on device``) that every rank can carry."""
    if error is None:
        return None
    return f"[Errno {error.errno}] {error.strerror}" if error.strerror else str(error)


def _finite_weights(pl_module: L.LightningModule) -> bool:
    # One fused check per parameter; only called when a checkpoint is about to be written.
    return all(bool(torch.isfinite(p).all()) for p in pl_module.parameters() if p.requires_grad)


def _signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "SIGTERM"
