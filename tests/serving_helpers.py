"""Trained tiny heads for the serving tests: real ``task=classify`` jobs on the tiny encoder.

Jobs are trained once per test session (a few seconds each) and shared by every serving test.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from tiny_tasks import classify_overrides, intent_rows, tag_rows, write_jsonl

import domain_distil.tasks.classify as classify
from domain_distil.common.configs import config_dir

CONF_DIR = str(config_dir())
TAG_LABELS = "cls_task.labels=[python,java,php]"


def job_cfg(root: Path, output_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.cache_dir = str(root / "cache")
        cfg.paths.data_dir = str(root / "data")
        cfg.paths.log_dir = str(root / "logs")
    return cfg


def train_job(root: Path, name: str, encoder_dir: Path, task_dir: Path, *extra: str) -> Path:
    """One classify job that keeps its best checkpoint (the head weights a bundle needs)."""
    output = root / "jobs" / name
    overrides = classify_overrides(encoder_dir, task_dir, "classify.keep_checkpoint=true", *extra)
    classify.run(job_cfg(root, output, *overrides))
    return output


def write_task_files(root: Path) -> tuple[Path, Path]:
    intent = write_jsonl(root / "data" / "cc" / "cc.jsonl", intent_rows(langs=("eng", "esp"))).parent
    tags = write_jsonl(root / "data" / "td" / "td.jsonl", tag_rows(langs=("eng",))).parent
    return intent, tags


def train_heads(root: Path, encoder_dir: Path) -> dict[str, Path]:
    """cc_intent eng + esp (binary, fixed threshold) and td_tags eng (multi-label, tuned threshold)."""
    intent, tags = write_task_files(root)
    return {
        "cc_intent/eng": train_job(root, "cc_eng", encoder_dir, intent, "lang=eng"),
        "cc_intent/esp": train_job(root, "cc_esp", encoder_dir, intent, "lang=esp"),
        "td_tags/eng": train_job(root, "td_eng", encoder_dir, tags, "cls_task=td_tags", TAG_LABELS,
                                 "classify.trainer.max_epochs=3"),
    }


_TRAINED: dict[Path, dict[str, Path]] = {}


def trained_heads(factory, encoder_dir: Path) -> dict[str, Path]:
    """``train_heads`` once per test session (``factory``: pytest's tmp_path_factory)."""
    if encoder_dir not in _TRAINED:
        _TRAINED[encoder_dir] = train_heads(factory.mktemp("serving_jobs"), encoder_dir)
    return _TRAINED[encoder_dir]


def assert_same_outputs(got: list, expected: list, atol: float = 1e-5) -> None:
    """Head outputs equal up to float noise: the batch a text lands in changes its padding, which
    moves encoder outputs by ~1e-7; labels, keys and thresholds must match exactly."""
    assert len(got) == len(expected)
    for row_got, row_expected in zip(got, expected, strict=True):
        assert [(o["task"], o["lang"]) for o in row_got] == [(o["task"], o["lang"]) for o in row_expected]
        for a, b in zip(row_got, row_expected, strict=True):
            assert set(a) == set(b)
            for key in a:
                if key == "probability":
                    assert abs(a[key] - b[key]) <= atol, (key, a, b)
                elif key == "probabilities":
                    assert a[key].keys() == b[key].keys()
                    assert all(abs(a[key][k] - b[key][k]) <= atol for k in a[key]), (a, b)
                else:
                    assert a[key] == b[key], (key, a, b)
