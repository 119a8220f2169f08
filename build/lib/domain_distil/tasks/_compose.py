"""Derived configs: "the same command line, plus these overrides", for tasks that run other tasks.

The demo and the experiments (data sweep, Wikipedia control) run distill, classify, report and
speed jobs in one process. Each job gets a config composed the normal Hydra way from the parent's
command-line overrides plus its own, so a user override (``trainer=gpu``, ``paths.cache_dir=...``)
reaches every job, and every job config is one that could have been typed on the command line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from domain_distil.common.configs import config_dir

CONF_DIR = str(config_dir())


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def parent_overrides() -> list[str]:
    """The overrides the running Hydra app was started with (empty outside a Hydra app)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


@contextmanager
def _hydra() -> Iterator[None]:
    if GlobalHydra.instance().is_initialized():
        yield
    else:  # called from a test or a script: initialise just for this composition
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            yield


def derive(parent: DictConfig, overrides: Sequence[str], output_dir: str | Path | None = None) -> DictConfig:
    """Compose ``config`` with the parent's overrides then ``overrides`` (which win on a clash).

    Paths are copied from the parent, resolved, so a derived job writes where its parent does;
    ``output_dir`` sets the job's own output folder.
    """
    own = {_key(o) for o in overrides}
    inherited = [o for o in parent_overrides() if _key(o) not in own]
    with _hydra():
        cfg = compose(config_name="config", overrides=[*inherited, *overrides])
    with open_dict(cfg):
        cfg.paths = OmegaConf.create(OmegaConf.to_container(parent.paths, resolve=True))
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
    return cfg
