"""Teacher loading: one-line errors for folders that are not models, and no per-key load report."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModel, BertConfig, BertModel

from domain_distil.common.errors import UserInputError
from domain_distil.modeling.teachers import (
    TeacherError,
    load_teacher,
    load_teacher_config,
    load_teacher_tokenizer,
    looks_like_local_path,
    pooler_free_kwargs,
    quiet_load_report,
)


def test_local_folders_that_are_not_models_fail_in_one_line(tmp_path: Path, tiny_teacher_dir: Path) -> None:
    cases = {
        tmp_path / "absent": "no such folder",
        tiny_teacher_dir / "config.json": "is a file",
        tmp_path: "the folder has no config.json",
    }
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    shutil.copy(tiny_teacher_dir / "config.json", weightless)
    cases[weightless] = "the folder has config.json but no weights (expected one of model.safetensors"
    for folder, expected in cases.items():
        with pytest.raises(TeacherError) as error:
            load_teacher_config({"name_or_path": str(folder)}, tmp_path)
        assert str(error.value).startswith(f"teacher.name_or_path={folder}: ") and expected in str(error.value)
        assert "\n" not in str(error.value) and isinstance(error.value, UserInputError)


def test_unreachable_hub_name_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TeacherError, match=r"^teacher.name_or_path=no-such-org/no-such-model: not a local model "
                                           r"folder and not loadable from the Hugging Face hub \("):
        load_teacher_config({"name_or_path": "no-such-org/no-such-model", "local_files_only": True}, tmp_path)
    assert not looks_like_local_path("no-such-org/no-such-model") and looks_like_local_path("./model")
    assert looks_like_local_path("data/students/x") and looks_like_local_path("/abs")


def test_headless_teacher_loads_without_a_report_table(tmp_path, tiny_teacher_dir, capfd, caplog) -> None:
    body = BertModel(BertConfig(vocab_size=463, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=128, add_pooling_layer=False))
    body.save_pretrained(tmp_path / "headless")
    for tokenizer_file in tiny_teacher_dir.glob("*.json"):
        if tokenizer_file.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(tokenizer_file, tmp_path / "headless")
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="domain_distil.modeling.teachers"):
        teacher = load_teacher({"name_or_path": str(tmp_path / "headless")}, tmp_path)
    assert not teacher.has_mlm_head
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err
    explained = [r.getMessage() for r in caplog.records if "no trained MLM head" in r.getMessage()]
    assert len(explained) == 1 and "distill=hidden" in explained[0]


def test_encoders_load_without_a_pooler(tiny_teacher_dir, capfd) -> None:
    config = AutoConfig.from_pretrained(tiny_teacher_dir)
    assert pooler_free_kwargs(config) == {"add_pooling_layer": False}
    capfd.readouterr()
    with quiet_load_report():
        model = AutoModel.from_pretrained(tiny_teacher_dir, **pooler_free_kwargs(config))
    assert model.pooler is None
    out, err = capfd.readouterr()
    assert "pooler" not in out + err
    from transformers import DistilBertConfig

    assert pooler_free_kwargs(DistilBertConfig()) == {}  # no pooler to drop, no such argument


def test_the_tokenizer_is_loaded_once_per_folder_state(tmp_path: Path, tiny_teacher_dir: Path) -> None:
    # One distillation asks for the teacher's tokenizer several times (corpus key, teacher): it is
    # parsed once per process, and a folder whose files change is read again.
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_teacher_dir, folder)
    first = load_teacher_tokenizer({}, str(folder))
    assert load_teacher_tokenizer({}, str(folder)) is first
    assert load_teacher(({"name_or_path": str(folder)}), tmp_path / "cache").tokenizer is first
    vocab = folder / "vocab.txt"
    if vocab.exists():
        vocab.unlink()
    first.add_tokens(["brandnewtoken"])  # a different tokenizer saved over the old files
    first.save_pretrained(folder)
    again = load_teacher_tokenizer({}, str(folder))
    assert again is not first and "brandnewtoken" in again.get_vocab()
