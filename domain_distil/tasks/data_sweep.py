"""task=data_sweep: how much in-domain text is enough (§5, Table 6, Figure 2; docs/reproduce.md).

Per budget in ``data_sweep.budgets_gb``: a nested seeded sample of the corpus, a student distilled on
it and frozen classifiers over ``data_sweep.seeds``; then the baselines with the same seeds. The loop
runs in this one process: with a multi-device trainer each distillation is a ``task=distill`` child
process that DDP spreads over the devices, found afterwards through its manifest. Every step is
cached, so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from domain_distil.classification.encoders import (
    EncoderRef,
    find_distilled_student,
    local_encoder,
    resolve_encoder,
)
from domain_distil.common.errors import UserInputError
from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.subset import budget_subset
from domain_distil.stages.classify import classify, classify_job, single_device
from domain_distil.stages.distil import distil, distill_run, plan_from_config

log = logging.getLogger(__name__)

Launcher = Callable[[Sequence[str]], None]


def budget_id(prefix: str, budget: float) -> str:
    """The paper's names: TD1.5, TD2.1, Wiki3.0 (the report reads the budget back from the id)."""
    return f"{prefix}{budget:g}" if "." in f"{budget:g}" else f"{prefix}{budget:.1f}"


def run(cfg: DictConfig, launch: Launcher | None = None) -> dict[str, Any]:
    """The sweep; ``launch`` starts a distributed ``task=distill`` run (a child process by default)."""
    refuse_inside_a_distributed_launch()
    sweep = cfg.data_sweep
    lang = str(sweep.lang)
    output_dir = Path(cfg.paths.output_dir)
    files = discover_files(cfg.corpus.dir, cfg.corpus.get("files"), [lang])
    seeds = [int(s) for s in sweep.seeds]
    students: dict[str, str] = {}
    for budget in sweep.budgets_gb:
        encoder_id = budget_id(str(sweep.id_prefix), float(budget))
        subset = budget_subset(files, {lang: float(budget)}, int(sweep.sample_seed), cfg.paths.cache_dir,
                               str(cfg.corpus.text_field))
        student = distil_on(cfg, subset, launch or launch_child)
        students[encoder_id] = str(student)
        for seed in seeds:
            encoder = local_encoder(encoder_id, student, cfg.paths.cache_dir)
            classify(_job(cfg, lang, seed, encoder_id, output_dir, lambda encoder=encoder: encoder))
    for baseline in sweep.baselines:
        for seed in seeds:
            baseline_cfg = _with_encoder_group(cfg, str(baseline))
            classify(_job(baseline_cfg, lang, seed, str(baseline_cfg.encoder.id), output_dir,
                          partial(resolve_encoder, baseline_cfg)))
    log.info("data sweep finished: %s", students)
    return {"students": students, "output_dir": str(output_dir)}


def refuse_inside_a_distributed_launch() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserInputError(
            "task=data_sweep runs its loop in one process and starts each distillation as its own distributed "
            "run; launch it with `python run.py experiment=data_sweep trainer=ddp`, not under torchrun/srun."
        )


def is_distributed(trainer_cfg: DictConfig) -> bool:
    """Whether the trainer group asks for more than one process (several devices or nodes)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, str):
        many = devices.strip() in ("-1", "auto") or "," in devices
    elif isinstance(devices, int):
        many = devices == -1 or devices > 1
    else:  # a list of device indices
        many = len(devices) > 1
    return many or int(trainer_cfg.get("num_nodes", 1) or 1) > 1


def distil_on(cfg: DictConfig, subset: Path, launch: Launcher) -> Path:
    """The student of ``subset``: in this process on one device, or a distributed child run."""
    subset_cfg = _edited(cfg, {"corpus.dir": str(subset), "corpus.files": {}, "corpus.languages": None})
    if not is_distributed(cfg.trainer):
        return distil(plan_from_config(subset_cfg), distill_run(cfg)).path
    # The child sees this process's command-line overrides: the same teacher, recipe and trainer.
    parent = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    launch([*parent, "task=distill", f"corpus.dir={subset}", "corpus.files={}", "corpus.languages=null"])
    # The child exported it; find it the way encoder=distilled does, through the manifests.
    return find_distilled_student(subset_cfg).path


def launch_child(overrides: Sequence[str]) -> None:
    """``python -m domain_distil.cli <overrides>``: Lightning's DDP launcher then starts the other ranks."""
    command = [sys.executable, "-m", "domain_distil.cli", *overrides]
    log.info("launching a distributed distillation: %s", " ".join(command))
    subprocess.run(command, check=True)


def _edited(cfg: DictConfig, changes: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with each dotted key of ``changes`` set to its value (what an override would say)."""
    copy = cfg.copy()
    with open_dict(copy):
        for key, value in changes.items():
            OmegaConf.update(copy, key, value, merge=False)
    return copy


def _with_encoder_group(cfg: DictConfig, name: str) -> DictConfig:
    """``cfg`` with the baseline encoder ``name`` (``data_sweep.encoders.<name>``, composed from conf/encoder)."""
    if name not in cfg.data_sweep.encoders:
        raise UserInputError(f"data_sweep.baselines: {name!r} is not in data_sweep.encoders "
                             f"({sorted(cfg.data_sweep.encoders)})")
    return _edited(cfg, {"encoder": cfg.data_sweep.encoders[name]})


def _job(cfg: DictConfig, lang: str, seed: int, encoder_id: str, output_dir: Path,
         encoder: Callable[[], EncoderRef]) -> Any:
    job = classify_job(_edited(cfg, {  # classification never runs under DDP
        "trainer": single_device(cfg.trainer), "seed": seed, "lang.name": lang, "encoder.id": encoder_id,
        "encoder.freeze": True, "task": "classify",
        "paths.output_dir": str(output_dir / "classify" / encoder_id / f"seed={seed}"),
    }))
    job.encoder = encoder
    return job
