"""Entry point: compose the config, pick the task, run it.

    python run.py                                   # the embedded demo, end to end, on CPU
    python run.py task=distill teacher=mbert corpus=text corpus.dir=data/my_corpus
    python run.py -m seed=range(10) lang=eng,esp,jap,por,rus

Each task lives in ``tasks/<task>.py`` and exposes ``run(cfg)``; this file only dispatches.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Tokenisers spawn threads; worker processes forked after that would deadlock or warn.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_task(cfg: DictConfig) -> Any:
    """Import ``tasks.<cfg.task>`` and call its ``run``; an unknown task names the valid ones."""
    try:
        module = importlib.import_module(f"tasks.{cfg.task}")
    except ModuleNotFoundError as error:
        if error.name != f"tasks.{cfg.task}":
            raise
        from tasks import available_tasks

        raise SystemExit(
            f"Unknown task={cfg.task!r}. Available tasks: {', '.join(available_tasks())}."
        ) from None
    return module.run(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    return run_task(cfg)


if __name__ == "__main__":
    main()
