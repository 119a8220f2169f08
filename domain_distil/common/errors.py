"""One base class for "the user's input is wrong": a config value, a data file, a model folder.

Such errors carry a message that names the file, line or key and says what to change; the command
line prints that message as one line (``error: ...``) and exits with status 2 instead of showing a
traceback, which only adds noise for a mistake in the input (``HYDRA_FULL_ERROR=1`` shows it).
Everything else (a bug, an out-of-memory) keeps its traceback.

It subclasses ``ValueError`` so existing ``except ValueError`` handlers and tests keep working.
"""

from __future__ import annotations

from typing import NoReturn

USER_INPUT_EXIT_CODE = 2  # the conventional "usage error" status (argparse, POSIX utilities)


class UserInputError(ValueError):
    """The input (config, data file, model folder) is wrong; the message says where and how to fix it."""

    def one_line(self) -> str:
        """The message on a single line (newlines in a message would break the one-line promise)."""
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
    """What the command line does with a :class:`UserInputError` raised by a task.

    - ``HYDRA_FULL_ERROR=1``: re-raise, so Hydra prints the full traceback.
    - A single run, or an error that stops the whole command before any job (``whole_command``):
      print ``error: <message>`` as one line on stderr and exit with status 2.
    - A job of a Hydra multirun: ``SystemExit`` is not an ``Exception``, so it would escape Hydra's
      launcher and silently skip every job after this one. Instead the one line goes to the job's
      log and a compact Hydra error is raised: the launcher records the job as failed, runs the
      remaining jobs, and at the end Hydra prints the first failure as one line (exit status 1,
      Hydra's status for a failed sweep).
    """
    import os
    import sys

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    message = error.one_line()
    if _in_multirun() and not whole_command:
        import logging

        from hydra.errors import CompactHydraException

        logging.getLogger("domain_distil").error("error: %s", message)
        raise CompactHydraException(f"error: {message}") from error
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_INPUT_EXIT_CODE)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
