"""Sweep folders: short stable names (conf/hydra/default.yaml), unquoted globs, and W&B Sweeps configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from domain_distil.common.configs import config_dir
from domain_distil.common.resolvers import overrides_hash, register_resolvers, short_hash

REPO = Path(__file__).resolve().parent.parent
HASH_FOLDER = re.compile(r"h[0-9a-f]{7}")
# A custom task's files and labels: spelled into a folder name this is one 400-byte component.
LONG_FILES = [f"/data/customer_support/exports/2026/intent_annotations_batch_{i:02d}.jsonl" for i in range(5)]
LONG_LABELS = [f"label_{name}" for name in ("refund", "delivery", "invoice", "password", "cancellation", "warranty")]


def test_short_hash_is_stable_and_registration_idempotent() -> None:
    # SHA-1 based, so the same overrides give the same folder on every machine and Python process.
    assert short_hash("lang=esp") == "h1d7a627"
    assert short_hash("") == "hda39a3e"
    register_resolvers()
    register_resolvers()  # the CLI and tests may both call it
    cfg = OmegaConf.create({"hydra": {"job": {"override_dirname": "lang=esp"}}, "seed": 3,
                            "dir": "${overrides_hash:}/seed${seed}"})
    assert cfg.dir == "h1d7a627/seed3"
    with pytest.raises(ValueError, match="needs hydra.job.override_dirname"):
        overrides_hash(_root_=OmegaConf.create({}))
    # The layout can be changed on the command line: no nested interpolation for Hydra's grammar to reject.
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["lang=esp", "hydra.sweep.subdir=${overrides_hash:}/s${seed}"],
                      return_hydra_config=True)
    assert cfg.hydra.sweep.subdir == f"{short_hash(cfg.hydra.job.override_dirname)}/s0"


def _write_result(root: Path, encoder: str, seed: int, f1: float) -> None:
    path = root / encoder / f"seed={seed}" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    scores = {"f1": f1, "precision": f1, "recall": f1}
    path.write_text(json.dumps({
        "task": "cc_intent", "lang": "eng", "encoder": {"id": encoder, "name_or_path": encoder, "hash": "x"},
        "freeze": True, "seed": seed, "test": scores, "best_val": scores, "timings": {}, "git": {}, "config": {},
        "status": "ok", "error": None,
    }))


@pytest.mark.slow
def test_multirun_with_long_overrides_writes_short_folders(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for seed in range(3):
        for encoder, f1 in (("student", 0.8), ("distil", 0.7), ("teacher", 0.75)):
            _write_result(results, encoder, seed, f1 + 0.01 * seed)
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", "~experiment", "task=report", "logger=none", "seed=0,1",
f"report.sweep_dirs=[{results}]", "report.baselines.distilmbert=distil",
        "report.stats.n_resamples=50", "report.formats=[csv]",
        f"cls_task.files=[{','.join(LONG_FILES)}]", f"cls_task.labels=[{','.join(LONG_LABELS)}]",
        f"paths.log_dir={tmp_path / 'logs'}", f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    points = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name != ".submitit")
    assert len(points) == 1 and HASH_FOLDER.fullmatch(points[0].name)  # one setting, its seeds side by side
    for point in points:
        assert sorted(p.name for p in point.iterdir()) == ["seed0", "seed1"]
        for job in point.iterdir():
            hydra_cfg = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra
            dirname = hydra_cfg.job.override_dirname
            assert len(dirname) > 255  # what the folder was called before: over the file-name limit
            assert point.name == short_hash(dirname)  # stable: a function of the overrides alone
            # The full overrides, seed included, are in Hydra's own file inside the job folder.
            overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
            assert f"seed={job.name.removeprefix('seed')}" in overrides
            assert f"cls_task.files=[{','.join(LONG_FILES)}]" in overrides
            assert (job / "table8.csv").is_file()
    for path in sweep.rglob("*"):
        assert max(len(part) for part in path.relative_to(sweep).parts) < 64, path


SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def _agent_command(sweep_config: dict, params: dict, sweep_id: str) -> list[str]:
    """The argv `wandb agent` builds for one grid point: wandb's own helpers fill the macros."""
    from wandb.sdk.launch.sweeps import utils

    os.environ["WANDB_SWEEP_ID"] = sweep_id
    try:
        command = utils.create_sweep_command(list(sweep_config["command"]))  # ${envvar:...}
    finally:
        del os.environ["WANDB_SWEEP_ID"]
    macros = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros |= {"env": ["/usr/bin/env"], "program": [sweep_config["program"]], "interpreter": ["python"]}
    argv: list[str] = []
    for part in map(str, command):  # as in wandb/wandb_agent.py: a whole-element ${name} is a macro
        argv += macros.get(part[2:-1], []) if part.startswith("${") and part.endswith("}") else [part]
    return argv


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_command_is_a_valid_hydra_run(path: Path, tmp_path: Path) -> None:
    register_resolvers()
    sweep_config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert sweep_config["method"] == "grid" and "${args_no_hyphens}" in sweep_config["command"]
    params = {name: spec["values"][-1] for name, spec in sweep_config["parameters"].items()}
    argv = _agent_command(sweep_config, params, "abc123")
    assert argv[:3] == ["/usr/bin/env", "python", "run.py"] and "seed=9" in argv
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*argv[3:], f"paths.log_dir={tmp_path}"],
                      return_hydra_config=True)
    assert cfg.task == "classify" and cfg.seed == 9 and cfg.encoder.id == "teacher" and cfg.encoder.freeze is False
    assert cfg.lang.name == params["lang"]
    assert cfg.logger.wandb.group == "sweep-abc123" and cfg.logger.wandb.offline is False
    run_dir = Path(cfg.hydra.run.dir)  # resolves ${overrides_hash:}: one folder per point, seeds side by side
    assert run_dir.parent.parent == tmp_path / "classify" / "wandb_sweeps" / "abc123"
    assert HASH_FOLDER.fullmatch(run_dir.parent.name) and run_dir.name == "seed9"


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_grid_is_the_experiments_hydra_grid(path: Path) -> None:
    """sweeps/<name>.yaml is experiment=<name>'s `-m` grid for W&B: editing one alone fails here."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep_config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert f"experiment={path.stem}" in sweep_config["command"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={path.stem}"], return_hydra_config=True)
    params = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
    hydra_grid = {param.key_or_group: list(param.sweep_iterator()) for param in params}
    assert {name: spec["values"] for name, spec in sweep_config["parameters"].items()} == hydra_grid


def test_bundle_jobs_take_unquoted_globs(make_cfg: Callable[..., DictConfig], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import domain_distil.tasks.bundle as bundle_task

    for encoder in ("student", "teacher"):
        for seed in range(2):
            _write_result(tmp_path / "sweep", encoder, seed, 0.8)
    seen: list = []

    def stop(paths: list) -> list:
        seen.extend(paths)
        raise RuntimeError("stop after find_jobs")

    monkeypatch.setattr(bundle_task, "find_jobs", stop)
    cfg: DictConfig = make_cfg("task=bundle", f"bundle.jobs=[{tmp_path}/sweep/*/seed?1]")  # seed=1 folders, unquoted
    with pytest.raises(RuntimeError, match="stop after find_jobs"):
        bundle_task.run(cfg)
    assert seen == [tmp_path / "sweep" / "student" / "seed=1", tmp_path / "sweep" / "teacher" / "seed=1"]
