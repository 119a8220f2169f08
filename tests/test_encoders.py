"""The one encoder loader: eval-mode body + tokenizer, errors that name the path, and its users."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from domain_distil.encoders import load_encoder


def test_loads_the_body_in_eval_mode_with_its_tokenizer(tiny_teacher_dir: Path) -> None:
    model, tokenizer = load_encoder(tiny_teacher_dir)
    assert not model.training and not hasattr(model, "cls")  # AutoModel: no MLM head, dropout off
    assert model.config.hidden_size == 32 and tokenizer.pad_token == "[PAD]"
    batch = tokenizer(["where is my order"], return_tensors="pt")
    with torch.no_grad():
        first, second = (model(**batch).last_hidden_state for _ in range(2))
    assert torch.equal(first, second)  # eval mode: deterministic


def test_tokenizer_can_come_from_another_folder(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    _, tokenizer = load_encoder(tiny_teacher_dir)
    tokenizer.model_max_length = 7  # marks the copy, so the test sees which folder it came from
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    _, loaded = load_encoder(tiny_teacher_dir, tokenizer_path=tmp_path / "tokenizer")
    assert loaded.model_max_length == 7 and load_encoder(tiny_teacher_dir)[1].model_max_length != 7
    assert loaded("hello world")["input_ids"] == tokenizer("hello world")["input_ids"]


def test_folder_without_config_is_refused_by_name(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"not-a-model has no config.json"):
        load_encoder(empty)


def test_folder_without_weights_names_the_path(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_teacher_dir, broken, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    with pytest.raises(OSError, match=r"cannot load '.*no-weights' as a transformers encoder"):
        load_encoder(broken, local_files_only=True)
