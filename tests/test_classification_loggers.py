"""W&B conventions: one offline run per job with readable name, sweep group, tags; finished on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wandb
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from omegaconf import open_dict
from tiny_tasks import classify_overrides, intent_rows, write_jsonl

import domain_distil.tasks.classify as classify
from domain_distil.common.loggers import build_loggers, finish_wandb, sweep_group


def test_default_loggers_fill_wandb_fields(make_cfg) -> None:
    cfg = make_cfg("task=classify")
    assert cfg.logger.wandb.offline is True  # offline unless logger.wandb.offline=false
    loggers = build_loggers(cfg.logger, name="cc_intent-eng-teacher-frozen-seed0", group="classify-sweep1",
                            tags=["eng", "teacher", "frozen"], job_type="classify")
    assert [type(lg) for lg in loggers] == [CSVLogger, WandbLogger]
    try:
        run = loggers[1].experiment  # starts the (offline) run
        assert run.name == "cc_intent-eng-teacher-frozen-seed0"
        assert run.group == "classify-sweep1" and run.job_type == "classify"
        assert set(run.tags) == {"eng", "teacher", "frozen"}
        assert Path(run.dir).is_relative_to(Path(cfg.paths.output_dir))
    finally:
        finish_wandb(failed=False)
    assert wandb.run is None


def test_configured_values_win(make_cfg) -> None:
    cfg = make_cfg("task=classify", "logger.wandb.group=my_exp", "logger.wandb.tags=[paper]")
    wb = build_loggers(cfg.logger, name="n", group="auto", tags=["eng"], job_type="classify")[1]
    try:
        assert wb.experiment.group == "my_exp" and set(wb.experiment.tags) == {"eng", "paper"}
    finally:
        finish_wandb(failed=False)


def test_sweep_group_outside_hydra_uses_the_run_folder(tmp_path: Path) -> None:
    assert sweep_group("classify", tmp_path / "2026-01-01_10-00-00") == "classify-2026-01-01_10-00-00"
    assert build_loggers(None, name="n", group="g", tags=[], job_type="classify") == []


def test_failing_job_finishes_its_wandb_run(make_cfg, tiny_teacher_dir, tmp_path) -> None:
    write_jsonl(tmp_path / "tasks" / "cc.jsonl", intent_rows(langs=("eng",)))
    overrides = classify_overrides(tiny_teacher_dir, tmp_path / "tasks", "classify.trainer.max_epochs=0")
    cfg = make_cfg(*[o for o in overrides if o != "logger=csv"])  # default loggers: W&B + CSV
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "job")
    with pytest.raises(RuntimeError, match="no checkpoint was saved"):
        classify.run(cfg)
    assert wandb.run is None  # the next job of the sweep gets a run of its own
    record = json.loads((tmp_path / "job" / "results.json").read_text())
    assert record["status"] == "failed" and "no checkpoint" in record["error"]
    assert list((tmp_path / "job" / "wandb").glob("offline-run-*"))
