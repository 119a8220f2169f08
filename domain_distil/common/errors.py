"""One base class for "the user's input is wrong" (a config value, a data file, a model folder): the
command line prints its message as one line and exits with status 2 instead of a traceback, which
only adds noise for a mistake in the input (``HYDRA_FULL_ERROR=1`` shows it). A ``ValueError``, so
``except ValueError`` handlers keep working.
"""

from __future__ import annotations

from typing import NoReturn

USER_INPUT_EXIT_CODE = 2  # the conventional "usage error" status (argparse, POSIX utilities)


class UserInputError(ValueError):
    """The input (config, data file, model folder) is wrong; the message says where and how to fix it."""

    def one_line(self) -> str:
        return " ".join(str(self).split())


class ConfigError(UserInputError):
    """A config value is missing or out of range; the message names the key (``cls_task.labels``)."""


class RunInterrupted(SystemExit):
    """A run stopped on a signal after saving what it needs to continue; its message says how.

    A ``SystemExit`` (status 128 + signal) so that no ``except Exception`` swallows it. The command
    line prints the message on stderr as it passes; ``announce`` is false on all ranks but one of a
    multi-process run, so the line appears once.
    """

    announce: bool = True


def exit_on_user_input_error(error: UserInputError, whole_command: bool = False) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 2 (``HYDRA_FULL_ERROR=1``: re-raise).

    In a job of a multirun (unless ``whole_command``: no job has started) a ``SystemExit`` would escape
    Hydra's launcher and silently skip every later job; there the line goes to the job's log and a
    compact Hydra error marks the job failed, so the others run and Hydra exits with status 1.
    """
    import os
    import sys

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    message = error.one_line()
    if in_multirun() and not whole_command:
        import logging

        from hydra.errors import CompactHydraException

        logging.getLogger("domain_distil").error("error: %s", message)
        raise CompactHydraException(f"error: {message}") from error
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_INPUT_EXIT_CODE)


def in_multirun() -> bool:
    """Whether this is a job of a Hydra multirun (``-m``); False outside ``@hydra.main``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
