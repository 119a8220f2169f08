"""``task=prepare`` through the real Hydra config: outputs, manifest, budgets, disjointness, resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import py7zr
import pytest
from synthetic_dumps import synthetic_posts, write_file, write_posts_xml

import domain_distil.sources.stackexchange_builder as seb
from domain_distil.common.io import read_json
from domain_distil.tasks import prepare

SMALL_TASK = (
    "corpus.source.task.sizes={test:60,val:60,train:120}",
    "corpus.source.task.min_per_tag={test:5,val:5,train:0}",
)


@pytest.fixture()
def dumps(tmp_path: Path) -> dict[str, Path]:
    raw = tmp_path / "raw"
    raw.mkdir()
    esp_xml = write_file(raw / "Posts.xml", write_posts_xml, synthetic_posts(700, seed=11, tag_style="angle"))
    esp = raw / "es.stackoverflow.com.7z"
    with py7zr.SevenZipFile(esp, "w") as z:
        z.write(esp_xml, "Posts.xml")
    esp_xml.unlink()
    jap = write_file(raw / "ja-Posts.xml", write_posts_xml, synthetic_posts(500, seed=12, tag_style="pipe"))
    return {"esp": esp, "jap": jap}


def se_cfg(make_cfg, dumps: dict[str, Path], *extra: str):
    return make_cfg(
        "task=prepare",
        "corpus=stackexchange",
        "corpus.languages=[esp,jap]",
        f"corpus.source.dumps.esp={dumps['esp']}",
        f"corpus.source.dumps.jap={dumps['jap']}",
        "corpus.source.budgets.esp=6e-5",
        "corpus.source.budgets.jap=4e-5",
        *SMALL_TASK,
        *extra,
    )


def post_ids(text: str) -> set[int]:
    return {int(m) for m in re.findall(r"\bpost(\d+)\b", text)}


def test_prepare_stackexchange_end_to_end_and_resume(make_cfg, dumps, monkeypatch) -> None:
    cfg = se_cfg(make_cfg, dumps)
    manifest = prepare.run(cfg)
    root = Path(cfg.corpus.prepared_dir)
    assert Path(cfg.corpus.dir) == root / "corpus"  # what task=distill will read
    rows = [json.loads(x) for x in (root / "tasks" / "td_tags.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"id", "text", "labels", "lang", "split", "source"}
    for lang, factor in (("esp", 1.0), ("jap", 0.5)):
        mine = [r for r in rows if r["lang"] == lang]
        sizes = {s: sum(r["split"] == s for r in mine) for s in ("train", "val", "test")}
        assert sizes == {"train": int(120 * factor), "val": int(60 * factor), "test": int(60 * factor)}
        for split in ("val", "test"):
            for tag in cfg.corpus.source.task.tags:
                assert sum(tag in r["labels"] for r in mine if r["split"] == split) >= round(5 * factor)
        corpus_text = (root / "corpus" / f"{lang}.txt").read_text()
        corpus_ids = post_ids(corpus_text)
        task_ids = {int(r["id"].split(":")[1]) for r in mine}
        assert not corpus_ids & task_ids  # disjoint by post id
        assert not corpus_ids & {i + 1 for i in task_ids}  # answers to task questions are left out too
        assert not corpus_ids & {1000000001, 1000000010}
        rec = manifest["languages"][lang]["corpus"]
        assert rec["bytes"] == len(corpus_text.encode()) and rec["documents"] == corpus_text.count("\n")
        assert abs(rec["bytes"] - rec["budget_bytes"]) <= 0.01 * rec["budget_bytes"]  # budget within 1%
        assert rec["bytes"] <= rec["budget_bytes"]
        task = manifest["tasks"]["td_tags"]["languages"][lang]
        assert task["test"]["posts"] == int(60 * factor) and min(task["val"]["tags"].values()) >= round(
            5 * factor
        )
        assert manifest["languages"][lang]["fake_posts_dropped"] == 2
        assert len(manifest["languages"][lang]["input"]["sha256"]) == 64
    assert manifest["seed"] == 0 and read_json(root / "manifest.json")["seed"] == 0

    # Resume: finished languages are not redone ...
    def boom(*args, **kwargs):
        raise AssertionError("a finished language was rebuilt")

    monkeypatch.setattr(seb.StackExchangeBuilder, "_build_language", boom)
    again = prepare.run(se_cfg(make_cfg, dumps))
    assert again["languages"]["esp"]["corpus"] == manifest["languages"]["esp"]["corpus"]
    # ... but a changed setting (here the seed) invalidates the marker.
    with pytest.raises(AssertionError, match="rebuilt"):
        prepare.run(se_cfg(make_cfg, dumps, "seed=1"))


def test_prepare_is_seeded(make_cfg, dumps, tmp_path) -> None:
    a = prepare.run(se_cfg(make_cfg, dumps))
    first = (tmp_path / "data/prepared/stackexchange/tasks/td_tags.jsonl").read_text()
    b = prepare.run(se_cfg(make_cfg, dumps, "seed=5"))
    second = (tmp_path / "data/prepared/stackexchange/tasks/td_tags.jsonl").read_text()
    assert a["seed"] == 0 and b["seed"] == 5 and first != second


def test_truncated_dump_keeps_finished_outputs_and_resume_redoes_only_it(
    make_cfg, dumps, monkeypatch
) -> None:
    cfg = se_cfg(make_cfg, dumps)
    prepare.run(cfg)
    root = Path(cfg.corpus.prepared_dir)
    before = {lang: (root / "corpus" / f"{lang}.txt").read_bytes() for lang in ("esp", "jap")}
    good = dumps["jap"].read_bytes()
    dumps["jap"].write_bytes(good[: len(good) * 2 // 3])  # a download that stopped two thirds in
    with pytest.raises(
        Exception,
        match=r"ja-Posts\.xml: malformed or truncated XML at line \d+, column \d+ "
        r"\(byte offset about \d+ of \d+\)",
    ):
        prepare.run(cfg)
    assert (root / "corpus" / "esp.txt").read_bytes() == before["esp"]  # untouched
    assert (root / "corpus" / "jap.txt").read_bytes() == before["jap"]  # the previous complete file
    assert not list(root.rglob("*.tmp"))  # no half-written temp files left

    # The download is completed: a rerun rebuilds Japanese only and gets the same result.
    dumps["jap"].write_bytes(good)
    built = []
    original = seb.StackExchangeBuilder._build_language

    def counting(self, out, lang, path, seed):
        built.append(lang)
        return original(self, out, lang, path, seed)

    monkeypatch.setattr(seb.StackExchangeBuilder, "_build_language", counting)
    prepare.run(cfg)
    assert built == ["jap"]
    assert (root / "corpus" / "jap.txt").read_bytes() == before["jap"]


def test_unset_dump_for_a_selected_language(make_cfg, dumps) -> None:
    cfg = make_cfg(
        "task=prepare",
        "corpus=stackexchange",
        "corpus.languages=[esp,rus]",
        f"corpus.source.dumps.esp={dumps['esp']}",
    )
    with pytest.raises(SystemExit, match=r"\['rus'\].*corpus.source.dumps.rus="):
        prepare.run(cfg)


def test_corpus_only_without_budget_takes_every_post(make_cfg, dumps) -> None:
    cfg = make_cfg(
        "task=prepare",
        "corpus=stackexchange",
        "corpus.languages=[jap]",
        f"corpus.source.dumps.jap={dumps['jap']}",
        "corpus/budgets@corpus.source.budgets=all",
        "corpus.source.task=null",
        "corpus.source.code=drop",
    )
    manifest = prepare.run(cfg)
    text = (Path(cfg.corpus.dir) / "jap.txt").read_text()
    assert post_ids(text) == set(range(1, 1001))  # 500 questions + 500 answers, no fakes, no tag wiki
    assert "def f" not in text  # code blocks dropped
    assert manifest["tasks"] == {} and manifest["languages"]["jap"]["corpus"]["budget_bytes"] is None
    assert not (Path(cfg.corpus.prepared_dir) / "tasks").exists()


@pytest.mark.parametrize(
    ("name", "budgets"),
    [
        ("stackexchange", {"eng": 1.58, "esp": 0.34, "jap": 0.06, "por": 0.34, "rus": 0.75}),
        ("wikipedia", {"eng": 1.58, "esp": 0.34, "jap": 0.06, "por": 0.34, "rus": 0.75}),
        ("conversational", {"eng": 0.95, "esp": 0.60, "jap": 0.44, "por": 0.35, "rus": 0.0}),
    ],
)
def test_corpus_configs_are_also_distillation_configs(make_cfg, tmp_path, name, budgets) -> None:
    cfg = make_cfg("task=prepare", f"corpus={name}")
    corpus = cfg.corpus
    assert corpus.name == name
    assert Path(corpus.prepared_dir) == tmp_path / "data" / "prepared" / name
    assert Path(corpus.dir) == Path(corpus.prepared_dir) / "corpus"
    for key in (
        "files",
        "languages",
        "text_field",
        "max_seq_length",
        "min_seq_length",
        "max_unk_ratio",
        "num_workers",
        "shard_tokens",
    ):
        assert key in corpus  # inherited from corpus/text.yaml, which task=distill reads
    assert dict(corpus.source.budgets) == budgets  # the paper's Table 1
    assert corpus.source._target_.startswith("domain_distil.sources.")
