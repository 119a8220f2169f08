"""task=speed: Table 5 columns, exact message lengths, variants and their agreement to fp32, and the
tokenizer-coverage section."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from tiny_models import SPECIAL_TOKENS
from transformers import AutoModel, AutoTokenizer, BertTokenizer

from domain_distil.analysis import speed
from domain_distil.analysis.encoders import EncoderSpec, parse_encoders, teacher_resolver
from domain_distil.analysis.messages import (
    read_texts,
    realistic_lengths,
    realistic_messages,
    synthetic_message,
)
from domain_distil.analysis.speed import median_ms
from domain_distil.tasks.speed import run

HEADER = [
    "Model", "Params (M)", "Size (MB)", "ms @8", "ms @16", "ms realistic", "max |Δ| fp32", "Note",
]


def speed_cfg(make_cfg: Callable[..., DictConfig], teacher: Path, *extra: str) -> DictConfig:
    return make_cfg(
        "task=speed", "logger=none", f"speed.encoders=[{{id: tiny, name_or_path: {teacher}}}]",
        "speed.lengths=[8,16]", "speed.repeats=2", "speed.warmup=1", "speed.realistic.n_messages=3", *extra,
    )


def test_synthetic_messages_have_the_exact_length(tiny_teacher_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    message = synthetic_message(tokenizer, 16, np.random.default_rng(0))
    ids = message["input_ids"][0].tolist()
    assert len(ids) == 16 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert not set(ids[1:-1]) & set(tokenizer.all_special_ids)
    with pytest.raises(ValueError, match="no room"):
        synthetic_message(tokenizer, 2, np.random.default_rng(0))


def test_realistic_lengths_are_seeded_and_clipped(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    lengths = realistic_lengths(500, mu=3.2, sigma=0.7, max_length=128, min_length=3, seed=0)
    assert lengths == realistic_lengths(500, mu=3.2, sigma=0.7, max_length=128, min_length=3, seed=0)
    assert min(lengths) >= 3 and max(lengths) <= 128
    assert 20 <= np.median(lengths) <= 30  # median of the log-normal is exp(3.2) = 24.5
    texts = tmp_path / "messages.jsonl"
    sample = ["hello world", "where is my order please"]
    texts.write_text("\n".join(json.dumps({"text": t}) for t in sample) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    messages = realistic_messages(tokenizer, read_texts(texts), 4, 3.2, 0.7, 128, seed=0)
    assert len(messages) == 4  # more messages than texts: drawn with replacement
    assert {m["input_ids"].shape[1] for m in messages} <= {len(tokenizer(t)["input_ids"]) for t in sample}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: expected a JSON object with a string field 'text'"):
        read_texts(bad)


def test_median_excludes_warmup() -> None:
    calls = []

    def runner(message: dict) -> np.ndarray:
        calls.append(message)
        return np.zeros(1)

    assert median_ms(runner, [{}, {}], repeats=3, warmup=2) >= 0.0
    assert len(calls) == (3 + 2) * 2



def test_a_calibration_error_is_raised_not_greyed(tiny_teacher_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad calibration text or tokenizer is a configuration error, not an unavailable int8 row."""

    def broken(*_: object) -> None:
        raise ValueError("bad calibration text")

    monkeypatch.setattr(speed.Calibration, "from_texts", broken)
    settings = speed.SpeedSettings(lengths=(8,), repeats=1, warmup=0, onnx=False, int8_calibration=("hello",))
    with pytest.raises(ValueError, match="bad calibration text"):
        speed.benchmark_encoder(EncoderSpec("tiny", str(tiny_teacher_dir)), settings,
                                lambda tok: [synthetic_message(tok, 8, np.random.default_rng(0))], ["hello"], tmp_path)


def test_teacher_entries_import_the_teacher_code_only_when_resolved(tiny_teacher_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = OmegaConf.create({"teacher": {"name_or_path": str(tiny_teacher_dir)}, "paths": {"cache_dir": "unused"}})
    with monkeypatch.context() as patch:
        patch.delitem(sys.modules, "domain_distil.modeling.teachers", raising=False)
        resolve = teacher_resolver(cfg)
        assert "domain_distil.modeling.teachers" not in sys.modules  # every config parse calls teacher_resolver
    specs = parse_encoders([{"id": "t", "teacher": True}], "speed.encoders", resolve)
    assert specs == [EncoderSpec("t", str(tiny_teacher_dir))]

def test_table_columns_and_variants_without_onnxruntime(
    make_cfg: Callable[..., DictConfig], tiny_teacher_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the serve extra were not installed
    threads = torch.get_num_threads()
    cfg = speed_cfg(make_cfg, tiny_teacher_dir)
    record = run(cfg)
    assert torch.get_num_threads() == threads  # restored after the measurement
    rows = {r["variant"]: r for r in record["rows"]}
    assert set(rows) == {"fp32", "int8", "onnx"}
    # The encoder as served: no pooler (nothing reads it; domain_distil/encoders.py).
    model = AutoModel.from_pretrained(tiny_teacher_dir, add_pooling_layer=False)
    expected_params = sum(p.numel() for p in model.parameters()) / 1e6
    assert rows["fp32"]["params_m"] == pytest.approx(expected_params)
    assert set(rows["fp32"]["ms"]) == {"8", "16", "realistic"}
    assert all(v > 0 for v in rows["fp32"]["ms"].values())
    assert rows["fp32"]["agreement"] == 0.0
    # int8 and ONNX both run on ONNX Runtime (the serving code): without it, rows that say so.
    for variant in ("int8", "onnx"):
        assert rows[variant]["note"].startswith("unavailable")
        assert "pip install onnxruntime onnx onnxscript" in rows[variant]["note"]
        assert rows[variant]["ms"] == {"8": None, "16": None, "realistic": None}
    markdown = (Path(cfg.paths.output_dir) / "speed.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0] == "| " + " | ".join(HEADER) + " |"
    assert markdown[2].startswith("| tiny | ")
    assert "| tiny (int8) |" in markdown[3] and "| tiny (ONNX Runtime) |" in markdown[4] and "unavailable" in markdown[4]
    assert record["coverage"]["encoders"] == {}  # one encoder: nothing to compare


def test_variants_only_for_listed_encoders(
    make_cfg: Callable[..., DictConfig], tiny_teacher_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the rows' presence is the point, not their times
    cfg = speed_cfg(
        make_cfg, tiny_teacher_dir, f"speed.encoders=[{{id: a, name_or_path: {tiny_teacher_dir}}},{{id: b, name_or_path: {tiny_teacher_dir}}}]",
        "speed.variants.encoders=[b]", "speed.variants.onnx=false",
    )
    assert [r["model"] for r in run(cfg)["rows"]] == ["a", "b", "b (int8)"]
    with pytest.raises(ValueError, match=r"\['c'\] are not in speed.encoders"):
        run(speed_cfg(make_cfg, tiny_teacher_dir, "speed.variants.encoders=[c]"))


def test_coverage_section_for_a_different_tokenizer(
    make_cfg: Callable[..., DictConfig], tiny_teacher_dir: Path, tmp_path: Path
) -> None:
    """A student folder whose tokenizer lacks some of the teacher's words (as a trimmed one does)."""
    trimmed = tmp_path / "trimmed"
    shutil.copytree(tiny_teacher_dir, trimmed)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (trimmed / name).unlink(missing_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = [*SPECIAL_TOKENS, *letters, *("##" + c for c in letters), "hello", "order"]
    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False).save_pretrained(trimmed)
    texts = tmp_path / "heldout.txt"
    texts.write_text("hello order\nrefund order\nhello ñ\n", encoding="utf-8")
    cfg = speed_cfg(
        make_cfg, tiny_teacher_dir,
        f"speed.encoders=[{{id: teacher, name_or_path: {tiny_teacher_dir}}},{{id: same, name_or_path: {tiny_teacher_dir}}},"
        f"{{id: trimmed, name_or_path: {trimmed}}}]",
        "speed.variants.int8=false", "speed.variants.onnx=false", f"speed.coverage_texts={texts}",
    )
    coverage = run(cfg)["coverage"]
    assert coverage["reference"] == "teacher" and coverage["texts"] == 3
    assert list(coverage["encoders"]) == ["trimmed"]  # "same" shares the teacher's vocabulary
    entry = coverage["encoders"]["trimmed"]
    assert entry["words"] == 6 and entry["identical_share"] == pytest.approx(4 / 6)
    assert entry["unk_share"] == pytest.approx(1 / 11)
    markdown = (Path(cfg.paths.output_dir) / "speed.md").read_text(encoding="utf-8")
    assert "Tokenizer coverage on 3 held-out texts" in markdown
    assert "| trimmed | 6 | 66.67 | 9.09 | 0.00 |" in markdown


@pytest.mark.slow
def test_onnx_runtime_and_int8_rows_agree_with_fp32(make_cfg: Callable[..., DictConfig], tiny_teacher_dir: Path,
                                                    tmp_path: Path) -> None:
    import onnxruntime  # noqa: F401  (the `serve` extra, installed by the README and CI)
    import onnxscript  # noqa: F401
    texts = tmp_path / "calibration.txt"  # held-out text for the default int8.exclude=auto
    texts.write_text("where is my order\nhello thanks\npython code error\nrefund my card\nthe quick brown fox\n")
    cfg = speed_cfg(make_cfg, tiny_teacher_dir, f"int8.calibration.texts={texts}")
    rows = {r["variant"]: r for r in run(cfg)["rows"]}
    assert rows["onnx"]["note"] == "onnxruntime CPU"
    assert rows["onnx"]["agreement"] < 1e-4  # same fp32 graph, different kernels
    # The int8 row is the graph serving would run: the int8 group's settings, named in the note.
    assert rows["int8"]["note"].startswith("onnxruntime int8 dynamic (exclude=['auto'], per_channel=True")
    assert "token_scale=['ffn_in', 'ffn_out', 'v']" in rows["int8"]["note"]
    assert 0.0 < rows["int8"]["agreement"] < 0.5  # int8 weights change the numbers a little, not a lot
    assert all(v > 0 for row in (rows["onnx"], rows["int8"]) for v in row["ms"].values())
    exports = Path(cfg.paths.output_dir) / "onnx" / "tiny"
    assert (exports / "onnx" / "model.onnx").is_file() and len(list(exports.glob("int8-*/model.onnx"))) == 1
    with open_dict(cfg):
        cfg.int8.method = "blockwise"
        cfg.speed.variants.onnx = False
    blockwise = {r["variant"]: r for r in run(cfg)["rows"]}["int8"]
    assert blockwise["note"] == "onnxruntime int8 blockwise (exclude=['auto'], block_size=32, accuracy_level=4, auto_share=0.3)"
    assert 0.0 < blockwise["agreement"] < 0.5
    assert len(list(exports.glob("int8-*/model.onnx"))) == 1  # a fresh export per run, of these settings
