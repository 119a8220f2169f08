"""docs/own-data.md, run as written: the page's commands on tiny files with the tiny teacher.

The commands are read from the page's ```bash block; the test only substitutes ``$TEACHER`` and
appends overrides that shrink the run (a 2-layer student, one short epoch, no loggers).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from domain_distil import cli

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "own-data.md"
SHRINK = ["student.num_layers=2", "distill.batch_size=8", "distill.trainer.accumulate_grad_batches=1",
          "distill.trainer.max_epochs=1", "classify.trainer.max_epochs=4", "classify.batch_size=8",
          "logger=none", "trainer.enable_progress_bar=false"]
LABELS = ["net::http", "c++ + stl", "two words"]
WORDS = {"net::http": "request proxy timeout header", "c++ + stl": "vector template iterator copy",
         "two words": "hello thanks you yes"}


def page_commands() -> list[list[str]]:
    """The ``python run.py`` commands of the page's bash block, continuation lines joined."""
    block = re.search(r"```bash\n(.*?)```", PAGE.read_text(), re.S).group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True)[2:] for line in block.splitlines() if line.startswith("python run.py")]


def write_tiny_data(root: Path) -> None:
    corpus = root / "my_data" / "corpus"
    corpus.mkdir(parents=True)
    lines = [" ".join(WORDS[LABELS[i % 3]].split()[j % 4] for j in range(8 + i % 5)) for i in range(40)]
    (corpus / "eng.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = []
    for split, n in (("train", 18), ("val", 9), ("test", 9)):
        for i in range(n):
            labels = [LABELS[i % 3]] + ([LABELS[(i + 1) % 3]] if i % 4 == 3 else [])
            text = " ".join(WORDS[label] for label in labels)
            rows.append({"text": text, "labels": labels, "lang": "eng", "split": split, "source": "natural",
                         "id": f"{split}-{i}"})
    tasks = root / "my_data" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "my_tags.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.slow
def test_own_data_page_runs_end_to_end(monkeypatch, tmp_path, tiny_teacher_dir):
    commands = page_commands()
    assert [c[0] for c in commands] == ["task=distill", "task=classify"]
    write_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOMAIN_DISTIL_CACHE", str(tmp_path / "cache"))
    for command in commands:
        args = [arg.replace("$TEACHER", str(tiny_teacher_dir)) for arg in command]
        monkeypatch.setattr(sys, "argv", ["domain-distil", *args, *SHRINK, f"hydra.run.dir=outputs/{args[0].removeprefix('task=')}"])
        try:
            cli.main()
        finally:
            GlobalHydra.instance().clear()
    students = list((tmp_path / "cache" / "students").glob("*/manifest.json"))
    assert len(students) == 1
    result = json.loads((tmp_path / "outputs" / "classify" / "results.json").read_text())
    assert result["status"] == "ok" and result["task"] == "my_tags"
    assert result["encoder"]["name_or_path"] == str(students[0].parent)
    assert 0.0 <= result["test"]["f1"] <= 1.0 and result["split_sizes"] == {"train": 18, "val": 9, "test": 9}
