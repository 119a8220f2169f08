"""Loggers for one job (distill, classify): W&B (offline unless told otherwise) and CSV.

W&B (specs/formats-heads-stats.md §6): one run per job, ``group`` = the sweep (every seed × language
of one ``-m`` call together), ``job_type`` = the task, a readable ``name`` and ``tags`` from the
caller; any of them set in ``conf/logger`` wins. ``finish_wandb`` must run in a ``finally``: with
Hydra's in-process launcher an unfinished run would swallow the next job's metrics.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from domain_distil.common.errors import in_multirun

log = logging.getLogger(__name__)


def sweep_group(task: str, output_dir: str | Path) -> str:
    """``<task>-<sweep folder name>`` in a multirun, ``<task>-<run folder name>`` otherwise."""
    if in_multirun():
        return f"{task}-{Path(HydraConfig.get().sweep.dir).name}"
    return f"{task}-{Path(output_dir).name}"


def build_loggers(logger_cfg: DictConfig | None, *, name: str, group: str, tags: Sequence[str],
                  job_type: str) -> list[Logger]:
    """Instantiate every entry of ``cfg.logger``, filling W&B's name/group/tags/job_type when unset."""
    if not logger_cfg:
        return []
    loggers: list[Logger] = []
    for key, entry in logger_cfg.items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        entry = entry.copy()
        if str(entry._target_).endswith("WandbLogger"):
            with open_dict(entry):
                entry.name = entry.get("name") or name
                entry.group = entry.get("group") or group
                entry.job_type = entry.get("job_type") or job_type
                entry.tags = list(dict.fromkeys([*tags, *(entry.get("tags") or [])]))
        log.info("logger %s: %s", key, entry._target_)
        loggers.append(instantiate(entry))
    return loggers


def log_config(loggers: Sequence[Logger], config: Mapping[str, Any]) -> None:
    """The resolved config as hyperparameters (W&B ``config``, CSV ``hparams.yaml``)."""
    for logger in loggers:
        logger.log_hyperparams(dict(config))


def finish_wandb(failed: bool) -> None:
    """Close the W&B run of this job, if one was started; never raises."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    try:
        wandb.finish(exit_code=1 if failed else 0)
    except Exception as error:  # a broken W&B must not take the sweep down with it
        log.warning("wandb.finish() failed: %s", error)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
