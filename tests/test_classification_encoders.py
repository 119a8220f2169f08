"""encoder=teacher|distilmbert|path|distilled resolve to a location and a content hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain_distil.classification.encoders import load_encoder, resolve_encoder
from domain_distil.common.hashing import hash_dir, hash_object
from domain_distil.encoders import encoder_hash


def test_teacher_uses_the_teacher_config(make_cfg, tiny_teacher_dir: Path) -> None:
    ref = resolve_encoder(make_cfg("encoder=teacher", f"teacher.name_or_path={tiny_teacher_dir}"))
    assert (ref.id, ref.name_or_path, ref.hash) == ("teacher", str(tiny_teacher_dir), hash_dir(tiny_teacher_dir))
    model, tokenizer = load_encoder(ref)
    assert model.config.hidden_size == 32 and tokenizer.pad_token == "[PAD]"
    assert not hasattr(model, "cls")  # AutoModel: the encoder body, without the MLM head


def test_distilmbert_is_a_hub_name_hashed_by_name_and_revision(make_cfg) -> None:
    ref = resolve_encoder(make_cfg("encoder=distilmbert"))
    assert ref.name_or_path == "distilbert-base-multilingual-cased" and not ref.is_local
    assert ref.hash == hash_object({"hub": "distilbert-base-multilingual-cased", "revision": None})
    assert ref.hash == encoder_hash("distilbert-base-multilingual-cased")


def test_path_must_be_a_model_folder(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        resolve_encoder(make_cfg("encoder=path", f"encoder.name_or_path={tmp_path / 'missing'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_encoder(make_cfg("encoder=path", f"encoder.name_or_path={tmp_path / 'empty'}"))
