"""Frozen-feature cache and encoder hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from domain_distil.classification.features import FeatureCache, encode_texts
from domain_distil.common.hashing import hash_dir
from domain_distil.encoders import encoder_hash

TEXTS = ["cancel my order please", "hello", "where is my package and my refund", "thanks a lot"]


@pytest.fixture(scope="module")
def tiny(tiny_teacher_dir: Path):
    return AutoModel.from_pretrained(tiny_teacher_dir).eval(), AutoTokenizer.from_pretrained(tiny_teacher_dir)


def test_encode_texts_matches_unpadded_forward(tiny) -> None:
    model, tokenizer = tiny
    store = encode_texts(model, tokenizer, TEXTS, max_length=16, batch_size=3, dtype=torch.float32)
    assert len(store) == len(TEXTS) and store.dim == 32
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            expected = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).last_hidden_state[0]
        # Row i is text i (order kept despite length-sorted batching) with padding stripped.
        torch.testing.assert_close(store[i], expected, atol=1e-5, rtol=1e-5)


def test_truncation_is_applied(tiny) -> None:
    model, tokenizer = tiny
    store = encode_texts(model, tokenizer, ["order " * 50], max_length=8, dtype=torch.float32)
    assert store[0].shape == (8, 32)


def test_cache_computes_once_and_keys_on_what_made_it(tiny, tmp_path: Path) -> None:
    loads = []

    def loader():
        loads.append(1)
        return tiny

    cache = FeatureCache(tmp_path / "features", "enc-a", max_length=16, load_encoder=loader)
    first = cache.get(TEXTS, "train")
    second = cache.get(TEXTS, "train")
    assert (cache.misses, cache.hits, len(loads)) == (1, 1, 1)
    assert second.hidden.dtype == torch.float16
    assert torch.equal(first.hidden, second.hidden) and torch.equal(first.offsets, second.offsets)
    meta = (cache.path(TEXTS) / "meta.json").read_text()
    assert '"examples": 4' in meta and '"encoder_hash": "enc-a"' in meta

    # A fresh cache object (the next seed's job) hits without ever loading the encoder.
    again = FeatureCache(tmp_path / "features", "enc-a", max_length=16, load_encoder=loader)
    again.get(TEXTS, "train")
    assert (again.hits, again.misses, len(loads)) == (1, 0, 1)

    keys = {
        cache.key(TEXTS),
        FeatureCache(tmp_path, "enc-b", 16, loader).key(TEXTS),
        FeatureCache(tmp_path, "enc-a", 32, loader).key(TEXTS),
        FeatureCache(tmp_path, "enc-a", 16, loader, dtype="float32").key(TEXTS),
        cache.key(TEXTS[:-1]),
    }
    assert len(keys) == 5
    assert [p.name for p in (tmp_path / "features").iterdir()] == [cache.key(TEXTS)]  # no temp leftovers


def test_encoder_hash_local_dir_is_content_and_memoised(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    import shutil

    model_dir = Path(shutil.copytree(tiny_teacher_dir, tmp_path / "model"))
    digest = encoder_hash(str(model_dir), cache_dir=tmp_path / "cache")
    assert digest == hash_dir(model_dir)
    assert len(list((tmp_path / "cache" / "encoder_hashes").iterdir())) == 1
    assert encoder_hash(str(model_dir), cache_dir=tmp_path / "cache") == digest
    (model_dir / "config.json").write_text((model_dir / "config.json").read_text() + " ")
    assert encoder_hash(str(model_dir), cache_dir=tmp_path / "cache") != digest
    hub = encoder_hash("distilbert-base-multilingual-cased", None)
    assert hub != encoder_hash("distilbert-base-multilingual-cased", "abc123")
