"""Deterministic faults for resume tests: a signal after a chosen batch, a disk that fills mid-save.

``SignalAtStep`` is used in-process and from the CLI
(``distill.callbacks=[{_target_:tests.fault_injection.SignalAtStep,...}]``). Registered before the
checkpoint callback (Lightning runs checkpoint callbacks last), so at ``step`` the signal arrives
before that step's checkpoint would be written.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch


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


class DiskFullAtSave:
    """A stand-in for ``torch.save`` whose ``nth`` call (1-based) runs out of disk after ``room`` bytes.

    That call is the real ``torch.save`` writing through a file that takes ``room`` more bytes and
    then fails the way ``write`` does on a full file system (``OSError(ENOSPC)``, the bytes that fit
    written), so torch's own error handling runs as on a real disk. Every other call is unchanged.
    ``files_at_failure`` is ``{name: size}`` of ``watch`` at that moment: where the partial bytes
    went. Install with ``monkeypatch.setattr(torch, "save", DiskFullAtSave(3, 65536, folder))``.
    """

    def __init__(self, nth: int, room: int, watch: Path) -> None:
        self.nth, self.room, self.watch, self.calls = nth, room, Path(watch), 0
        self.files_at_failure: dict[str, int] = {}
        self._real = torch.save

    def __call__(self, obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.calls != self.nth:
            return self._real(obj, f, *args, **kwargs)
        if isinstance(f, str | os.PathLike):
            with open(f, "wb") as handle:
                return self._real(obj, _FillingFile(handle, self), *args, **kwargs)
        return self._real(obj, _FillingFile(f, self), *args, **kwargs)


class _FillingFile:
    """A writable file with ``disk.room`` bytes of room left; the write that overflows it fails."""

    def __init__(self, handle: Any, disk: DiskFullAtSave) -> None:
        self.handle, self.disk = handle, disk

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        fits = view[: self.disk.room]
        self.handle.write(fits)
        self.disk.room -= len(fits)
        if len(fits) < len(view):
            self.handle.flush()
            self.disk.files_at_failure = {p.name: p.stat().st_size for p in self.disk.watch.iterdir()}
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(view)

    def flush(self) -> None:
        self.handle.flush()
