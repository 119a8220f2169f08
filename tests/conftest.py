"""Shared fixtures: a tiny local teacher (no download) and Hydra configs pointed at tmp paths."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from tiny_models import build_tiny_teacher

from domain_distil.common.configs import config_dir

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)

CONF_DIR = str(config_dir())


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer, 32-dim random BertForMaskedLM with a WordPiece tokenizer, saved once per session."""
    return build_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"))


@pytest.fixture()
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real config with overrides; every path points into this test's tmp_path."""

    def _make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "output")
            cfg.paths.cache_dir = str(tmp_path / "cache")
            cfg.paths.data_dir = str(tmp_path / "data")
            cfg.paths.log_dir = str(tmp_path / "logs")
        return cfg

    return _make
