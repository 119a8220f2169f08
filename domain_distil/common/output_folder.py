"""The run's output folder must be writable: checked before Hydra creates it, refused in one line.

Hydra writes its ``.hydra/`` record into ``hydra.run.dir`` (``hydra.sweep.dir`` for ``-m``) before
any task starts, so a read-only folder would fail inside Hydra with a traceback and exit status 1;
:class:`WritableOutputFolder` (``conf/hydra/default.yaml``) probes it first and exits with status 2.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from domain_distil.common.errors import UserInputError, exit_on_user_input_error


def check_writable_folder(folder: str | Path, setting: str) -> None:
    """Create ``folder`` and write (then remove) a probe file in it; a ``UserInputError`` naming
    ``setting`` when either fails (read-only, a file in the way, no permission, no space)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserInputError(
            f"{setting}={folder}: cannot create or write the run's output folder ({reason}); make it writable "
            f"or point paths.log_dir (or {setting}) at a writable folder"
        ) from None


class WritableOutputFolder(Callback):
    """Refuses a run (or a whole sweep) whose output folder cannot be written, before any work."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder: str, setting: str) -> None:
        try:
            check_writable_folder(folder, setting)
        except UserInputError as error:  # no job has started: one line and status 2, even for -m
            exit_on_user_input_error(error, whole_command=True)
