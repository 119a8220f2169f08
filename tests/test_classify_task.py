"""task=classify end to end on the tiny encoder: cache reuse across seeds, results.json, failures, CLI sweep."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict
from tiny_tasks import classify_overrides, intent_rows, tag_rows, write_jsonl

import domain_distil.stages.classify as classify_stage
import domain_distil.tasks.classify as classify
from domain_distil.classification.metrics import THRESHOLD_GRID
from domain_distil.classification.results import validate_results
from domain_distil.classification.taskfile import TaskFileError
from domain_distil.common.hashing import hash_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def intent_dir(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "tasks" / "cc.jsonl", intent_rows(langs=("eng", "esp")))
    return tmp_path / "tasks"


def _cfg(make_cfg: Callable[..., DictConfig], output_dir: Path, *overrides: str) -> DictConfig:
    cfg = make_cfg(*overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def test_frozen_sweep_reuses_features_and_results_schema(make_cfg, tiny_teacher_dir, intent_dir, tmp_path,
                                                         monkeypatch) -> None:
    loads, forwards = [], []
    real_load = classify_stage.load_encoder

    def counting_load(ref):
        loads.append(ref.name_or_path)
        model, tokenizer = real_load(ref)
        model.register_forward_hook(lambda *args: forwards.append(1))
        return model, tokenizer

    monkeypatch.setattr(classify_stage, "load_encoder", counting_load)
    base = classify_overrides(tiny_teacher_dir, intent_dir)

    first = classify.run(_cfg(make_cfg, tmp_path / "s0", *base, "seed=0"))
    assert first["feature_cache"]["misses"] == 3 and len(loads) == 1 and forwards
    calls_after_first = len(forwards)

    second = classify.run(_cfg(make_cfg, tmp_path / "s1", *base, "seed=1"))
    # Cache hit: the second seed neither loads nor calls the encoder.
    assert second["feature_cache"] == {"hits": 3, "misses": 0, "encode_s": 0.0}
    assert len(loads) == 1 and len(forwards) == calls_after_first
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 3  # train, val, test

    # Same seed, same metrics (CPU, deterministic mode), whether features were fresh or cached.
    repeat = classify.run(_cfg(make_cfg, tmp_path / "s0b", *base, "seed=0"))
    assert (repeat["test"], repeat["best_val"]) == (first["test"], first["best_val"])

    record = json.loads((tmp_path / "s1" / "results.json").read_text())
    validate_results(record)
    # Re-running into a folder with a finished job of the same config returns it (sweep resume);
    # any config change trains again.
    assert classify.run(_cfg(make_cfg, tmp_path / "s1", *base, "seed=1")) == record
    changed = classify.run(_cfg(make_cfg, tmp_path / "s1", *base, "seed=1", "classify.trainer.max_epochs=1"))
    assert changed["config"]["classify"]["trainer"]["max_epochs"] == 1 and changed["best_val"]["epoch"] == 0
    assert record["task"] == "cc_intent" and record["lang"] == "eng" and record["status"] == "ok"
    record = json.loads((tmp_path / "s1" / "results.json").read_text())
    assert record["seed"] == 1 and record["config"]["seed"] == 1 and record["freeze"] is True
    assert record["encoder"] == {"id": "path", "name_or_path": str(tiny_teacher_dir),
                                 "hash": hash_dir(tiny_teacher_dir)}
    assert set(record["test"]) == {"f1", "precision", "recall"}
    assert record["best_val"]["epoch"] == 0 and record["error"] is None
    assert {"fit_s", "evaluate_s", "total_s"} <= set(record["timings"])
    assert set(record["git"]) == {"commit", "branch", "dirty"}
    assert record["split_sizes"] == {"train": 22, "val": 8, "test": 8}
    assert first["test"]["f1"] > 0.5  # the tiny task is learnable from frozen random features
    assert not (tmp_path / "s1" / "checkpoints").exists()  # keep_checkpoint=false
    assert (tmp_path / "s1" / "csv").is_dir()


def test_failed_job_writes_failed_results(make_cfg, tiny_teacher_dir, tmp_path) -> None:
    rows = intent_rows(langs=("eng",))
    rows[3]["lang"] = "xx"
    write_jsonl(tmp_path / "bad" / "cc.jsonl", rows)
    cfg = _cfg(make_cfg, tmp_path / "out", *classify_overrides(tiny_teacher_dir, tmp_path / "bad"))
    with pytest.raises(TaskFileError, match="cc.jsonl:4: unknown language 'xx'"):
        classify.run(cfg)
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    validate_results(record)
    assert record["status"] == "failed" and "unknown language 'xx'" in record["error"]
    assert record["test"] is None and record["seed"] == 0


def test_finetuned_job(make_cfg, tiny_teacher_dir, intent_dir, tmp_path) -> None:
    overrides = classify_overrides(tiny_teacher_dir, intent_dir, "encoder.freeze=false",
                                   "classify.trainer.max_epochs=1", "lang=esp")
    record = classify.run(_cfg(make_cfg, tmp_path / "ft", *overrides))
    assert record["status"] == "ok" and record["freeze"] is False and record["lang"] == "esp"
    assert record["feature_cache"] is None


def test_multilabel_job_tunes_threshold(make_cfg, tiny_teacher_dir, tmp_path) -> None:
    write_jsonl(tmp_path / "tags" / "td.jsonl", tag_rows(langs=("eng",)))
    overrides = classify_overrides(tiny_teacher_dir, tmp_path / "tags", "cls_task=td_tags",
                                   "cls_task.labels=[python,java,php]", "classify.trainer.max_epochs=3")
    record = classify.run(_cfg(make_cfg, tmp_path / "td", *overrides))
    assert record["task_type"] == "multilabel" and record["threshold"] in THRESHOLD_GRID
    # best_val is re-measured with the tuned threshold on the best checkpoint.
    assert record["best_val"]["f1"] == pytest.approx(record["threshold_tuned_val_f1"], abs=1e-6)


@pytest.mark.slow
def test_cli_multirun_two_seeds_two_languages(tiny_teacher_dir, intent_dir, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", "seed=0,1", "lang=eng,esp",
        *classify_overrides(tiny_teacher_dir, intent_dir, "classify.trainer.max_epochs=2"),
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}",
        # keep the folder names short: paths would otherwise be spelled into them
        "hydra.job.config.override_dirname.exclude_keys=[seed,encoder.name_or_path,cls_task.dir,"
        "paths.log_dir,paths.cache_dir]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted(sweep.rglob("results.json"))
    assert len(results) == 4
    records = [json.loads(p.read_text()) for p in results]
    assert {(r["lang"], r["seed"]) for r in records} == {("eng", 0), ("eng", 1), ("esp", 0), ("esp", 1)}
    for path, record in zip(results, records, strict=True):
        validate_results(record)
        # Short sweep folders: a hash of the overrides, then the seed; the overrides sit inside.
        assert path.parent.name == f"seed{record['seed']}" and re.fullmatch(r"h[0-9a-f]{7}", path.parent.parent.name)
        assert f"lang={record['lang']}" in (path.parent / ".hydra" / "overrides.yaml").read_text()
    # One encoding pass per language and split, shared by both seeds.
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 6


@pytest.mark.slow
def test_cli_failing_job_does_not_stop_the_sweep(tiny_teacher_dir, intent_dir, tmp_path) -> None:
    # cc_intent has no Russian data: that job fails, the English job after it still runs, and the
    # multirun exits non-zero at the end (Hydra's basic sweeper re-raises after the batch).
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", "seed=0", "lang=rus,eng",
        *classify_overrides(tiny_teacher_dir, intent_dir, "classify.trainer.max_epochs=1"),
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}",
        "hydra.job.config.override_dirname.exclude_keys=[seed,encoder.name_or_path,cls_task.dir,"
        "paths.log_dir,paths.cache_dir]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0 and "unknown language 'rus'" in done.stderr
    status = {json.loads(p.read_text())["lang"]: json.loads(p.read_text())["status"]
              for p in sweep.rglob("results.json")}
    assert status == {"rus": "failed", "eng": "ok"}


def test_rerun_after_the_encoder_is_retrained_in_place_trains_again(make_cfg, tiny_teacher_dir, intent_dir, tmp_path,
                                                                    monkeypatch) -> None:
    """``encoder=path`` names a folder, not weights: a sweep re-run into its folder after the model
    there was retrained must train again, and only an unchanged model is skipped (issue 21.2)."""
    import shutil

    from safetensors.torch import load_file, save_file

    model = shutil.copytree(tiny_teacher_dir, tmp_path / "my_student")
    fits = []
    real_fit = classify_stage.L.Trainer.fit
    monkeypatch.setattr(classify_stage.L.Trainer, "fit", lambda self, *a, **k: (fits.append(1), real_fit(self, *a, **k)))
    base = classify_overrides(model, intent_dir, "classify.trainer.max_epochs=1", "seed=0")
    first = classify.run(_cfg(make_cfg, tmp_path / "job", *base))
    assert len(fits) == 1 and first["encoder"]["hash"] == hash_dir(model)

    weights = load_file(model / "model.safetensors")
    name = next(key for key in weights if key.endswith("word_embeddings.weight"))
    weights[name] = weights[name] + 0.5
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})  # retrained, same folder

    second = classify.run(_cfg(make_cfg, tmp_path / "job", *base))
    on_disk = json.loads((tmp_path / "job" / "results.json").read_text())
    assert len(fits) == 2 and second["config"] == first["config"]
    assert on_disk["encoder"]["hash"] == hash_dir(model) != first["encoder"]["hash"]
    assert second["feature_cache"]["misses"] == 3  # features of the new weights, not the old ones

    # Same config, data and weights: skipped, the finished record comes back untouched.
    assert classify.run(_cfg(make_cfg, tmp_path / "job", *base)) == on_disk and len(fits) == 2
    job = classify_stage.classify_job(_cfg(make_cfg, tmp_path / "job", *base))
    assert classify_stage.finished_result(job).record == on_disk  # what the demo's launcher asks first
