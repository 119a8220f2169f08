"""The command line (``domain-distil``, ``python run.py``): compose the config, run ``tasks/<task>.py``.

Only the command line gets :func:`demo_by_default`; composing in Python (``hydra.compose``), name
``experiment=demo`` yourself (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from domain_distil.common.configs import check_group_choices, config_dir
from domain_distil.common.errors import RunInterrupted, UserInputError, exit_on_user_input_error
from domain_distil.common.resolvers import register_resolvers

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra resolves hydra.sweep.subdir (conf/hydra/default.yaml)

# Tokenisers spawn threads; worker processes forked after that would deadlock or warn.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_task(cfg: DictConfig) -> Any:
    """Import ``domain_distil.tasks.<cfg.task>`` and call its ``run``; an unknown task names the valid ones."""
    name = f"domain_distil.tasks.{cfg.task}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        from domain_distil.tasks import available_tasks

        raise SystemExit(f"Unknown task={cfg.task!r}. Available tasks: {', '.join(available_tasks())}.") from None
    return module.run(cfg)


def _app(cfg: DictConfig) -> Any:
    try:
        return run_task(cfg)
    except UserInputError as error:  # a wrong config value or data file: one line, exit status 2
        exit_on_user_input_error(error)
    except RunInterrupted as stop:  # a SystemExit: Python would exit with its status and print nothing
        if stop.announce:
            print(stop, file=sys.stderr, flush=True)
        raise


# Hydra's flags that take the next argument as their value (``--config-dir=/x`` is one argument).
VALUE_FLAGS = frozenset({"-cp", "--config-path", "-cd", "--config-dir", "-cn", "--config-name", "-c", "--cfg",
                         "-p", "--package"})


def demo_by_default(arguments: list[str]) -> list[str]:
    """``arguments`` with ``experiment=demo`` added when they name no experiment and no task but
    ``demo``, nor another primary config (``--config-name``, which picks its own experiment)."""
    flag_values = {i + 1 for i, arg in enumerate(arguments) if arg in VALUE_FLAGS}  # `-cd /a=b`: no override
    at = [i for i, arg in enumerate(arguments)
          if i not in flag_values and (arg[:1] in ("~", "+") or ("=" in arg and arg[:1] != "-"))]
    named = {arguments[i].split("=", 1)[0].lstrip("~+"): arguments[i].partition("=")[2] for i in at}
    other_config = any(arg.split("=")[0] in ("-cn", "--config-name") for arg in arguments)
    if "experiment" in named or named.get("task", "demo") != "demo" or other_config:
        return arguments
    first = at[0] if at else 0  # argparse reads the overrides as one run of arguments
    return [*arguments[:first], "experiment=demo", *arguments[first:]]


def main() -> Any:
    """Console-script entry point (``domain-distil``); the configs come from :func:`config_dir`."""
    sys.argv[1:] = demo_by_default(sys.argv[1:])
    try:
        check_group_choices(sys.argv[1:])  # `lang=deu`: one line naming the known options, not Hydra's report
    except UserInputError as error:
        exit_on_user_input_error(error)
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(_app)
    return app()


if __name__ == "__main__":
    main()
