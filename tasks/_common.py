"""Wiring shared by the task entry points: seeding, loggers, W&B clean-up."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def seed_everything(seed: int | None) -> None:
    # `if seed:` would leave seed 0 unseeded (the lightning-hydra-template bug); 0 is a seed.
    if seed is not None:
        L.seed_everything(int(seed), workers=True)


def instantiate_loggers(logger_cfg: DictConfig | None, **overrides: Any) -> list[Any]:
    """Every entry of the ``logger`` group that has a ``_target_``; ``overrides`` go to all of them
    where the logger accepts them (e.g. W&B ``name``/``tags``)."""
    loggers = []
    for name, entry in (logger_cfg or {}).items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        accepted = {k: v for k, v in overrides.items() if k in entry}
        loggers.append(instantiate(entry, **accepted))
        log.debug("logger %s: %s", name, entry._target_)
    return loggers


def finish_wandb(failed: bool = False) -> None:
    """Close the W&B run so the next job of a multirun gets its own (wandb#1314)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
