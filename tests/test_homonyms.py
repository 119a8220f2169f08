"""task=homonyms: the paper's sentence pairs, mean pooling over the mask, cosine per encoder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from domain_distil.analysis.homonyms import cosine_pairs, load_homonyms, table7_rows
from domain_distil.encoders import embed, load_encoder, mean_pool
from domain_distil.tasks.homonyms import run

PAPER_WORDS = {
    "Java": ("coffee", "C#"),
    "Python": ("snake", "PHP"),
    "floats": ("rafts", "doubles"),
    "terminal": ("ending", "command line"),
    "classes": ("lectures", "objects"),
    "Oracle": ("Prophet", "DynamoDB"),
}


def test_data_holds_the_papers_six_words_and_sentences() -> None:
    homonyms = load_homonyms()
    assert {h.word: (h.neighbors["general"], h.neighbors["technical"]) for h in homonyms} == PAPER_WORDS
    python = next(h for h in homonyms if h.word == "Python")
    assert python.sentences("technical") == ("I have Python code for shortening a URL.", "I have PHP code for shortening a URL.")
    java = next(h for h in homonyms if h.word == "Java")
    assert java.sentences("technical")[1] == "I can\u2019t find any code or post on how to get traffic data in C# for Windows Phone 8."
    terminal = next(h for h in homonyms if h.word == "terminal")
    assert terminal.sentences("general")[0] == "The terminal scene of the movie was a big surprise!"


def test_bad_data_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.json"
    bad.write_text(json.dumps({"words": [{"word": "Java", "general": {"neighbor": "coffee", "template": "no slot"},
                                          "technical": {"neighbor": "C#", "template": "in {}"}}]}))
    with pytest.raises(ValueError, match=r"words\[0\]\.general\.template: expected exactly one"):
        load_homonyms(bad)


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_embedding_does_not_depend_on_batch_padding(tiny_teacher_dir: Path) -> None:
    model, tokenizer = load_encoder(tiny_teacher_dir)
    short = "hello world"
    alone = embed(model, tokenizer, [short])
    padded = embed(model, tokenizer, [short, "the quick brown fox jumps over the lazy dog and the cat sat on the mat"])
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)


def test_cosine_of_a_sentence_with_itself_is_one(tiny_teacher_dir: Path) -> None:
    model, tokenizer = load_encoder(tiny_teacher_dir)
    same, different = cosine_pairs(model, tokenizer, [("I have Python code.", "I have Python code."),
                                                      ("I have Python code.", "the cat sat on the mat")])
    assert same == pytest.approx(1.0, abs=1e-6)
    assert different < 1.0 - 1e-4


def test_task_prints_table7_layout_per_encoder(make_cfg: Callable[..., DictConfig], tiny_teacher_dir: Path) -> None:
    cfg = make_cfg(
        "task=homonyms", "logger=none",
        f"homonyms.encoders=[{{id: a, name_or_path: {tiny_teacher_dir}}},{{id: b, name_or_path: {tiny_teacher_dir}}}]",
    )
    record = run(cfg)
    assert list(record["cosine"]) == ["a", "b"]
    assert set(record["cosine"]["a"]) == set(PAPER_WORDS)
    # The same weights under two ids give the same numbers; different sentences give cos < 1.
    assert record["cosine"]["a"] == record["cosine"]["b"]
    assert all(0.0 < v["general"] < 1.0 for v in record["cosine"]["a"].values())
    header, rows = table7_rows(record["cosine"], load_homonyms())
    assert header == ["Word", "General Neighbor", "cos a", "cos b", "Technical Neighbor", "cos a", "cos b"]
    assert [r[0] for r in rows] == list(PAPER_WORDS)
    assert rows[0][1] == "coffee" and rows[0][4] == "C#"
    markdown = (Path(cfg.paths.output_dir) / "homonyms.md").read_text(encoding="utf-8")
    assert "| Word | General Neighbor | cos a | cos b | Technical Neighbor | cos a | cos b |" in markdown
    assert "1-cos a" in markdown


def test_default_encoder_list_is_the_configured_teacher(make_cfg: Callable[..., DictConfig], tiny_teacher_dir: Path) -> None:
    record = run(make_cfg("task=homonyms", "logger=none", f"teacher.name_or_path={tiny_teacher_dir}"))
    assert record["encoders"] == [{"id": "teacher", "name_or_path": str(tiny_teacher_dir)}]
    with pytest.raises(ValueError, match=r"homonyms.encoders\[0\]: expected"):
        run(make_cfg("task=homonyms", "logger=none", "homonyms.encoders=[{id: x}]"))
