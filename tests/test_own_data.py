"""docs/own-data.md, run as written: the page's commands on tiny files with the tiny teacher.

The commands are read from the page's ```bash blocks; the test only substitutes ``$TEACHER``, the
student keys ``$KEY`` / ``$GENERAL_KEY`` (from the last line each ``task=distill`` prints), three
seeds for ten, and appends overrides that shrink the run (a 2-layer student, one short epoch, no
loggers).
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
# Which variable of the page holds the key of the student distilled on which corpus folder.
KEY_OF_CORPUS = {"corpus.dir=my_data/corpus": "$KEY", "corpus.dir=my_data/general": "$GENERAL_KEY"}
PRINTED_COMMAND = re.compile(r"^python run\.py task=classify encoder=distilled encoder\.key=(\w+)$", re.M)


def page_commands() -> list[list[str]]:
    """The ``python run.py`` commands of the page's bash blocks, in order, continuation lines joined."""
    blocks = [b.replace("\\\n", " ") for b in re.findall(r"```bash\n(.*?)```", PAGE.read_text(), re.S)]
    return [shlex.split(line, comments=True)[2:] for block in blocks for line in block.splitlines()
            if line.startswith("python run.py")]


def task_of(command: list[str]) -> str:
    return next(arg for arg in command if arg.startswith("task=")).removeprefix("task=")


def write_tiny_data(root: Path) -> None:
    corpus = root / "my_data" / "corpus"
    corpus.mkdir(parents=True)
    lines = [" ".join(WORDS[LABELS[i % 3]].split()[j % 4] for j in range(8 + i % 5)) for i in range(40)]
    (corpus / "eng.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = []
    general = root / "my_data" / "general"  # general text: the tag words never occur
    general.mkdir(parents=True)
    (general / "eng.txt").write_text("".join(f"{WORDS['two words']} " * (2 + i % 3) + "\n" for i in range(40)),
                                     encoding="utf-8")
    for split, n in (("train", 18), ("val", 9), ("test", 9)):
        for i in range(n):
            labels = [LABELS[i % 3]] + ([LABELS[(i + 1) % 3]] if i % 4 == 3 else [])
            text = " ".join(WORDS[label] for label in labels)
            rows.append({"text": text, "labels": labels, "lang": "eng", "split": split, "source": "natural",
                         "id": f"{split}-{i}"})
    tasks = root / "my_data" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "my_tags.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def substitute(arg: str, variables: dict[str, str]) -> str:
    for name, value in sorted(variables.items(), key=lambda item: -len(item[0])):  # $GENERAL_KEY before $KEY
        arg = arg.replace(name, value)
    return arg.replace("seed=range(10)", "seed=range(3)")


@pytest.mark.slow
def test_own_data_page_runs_end_to_end(monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    commands = page_commands()
    assert [task_of(c) for c in commands] == ["distill", "classify", "distill", "classify", "classify", "report"]
    write_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOMAIN_DISTIL_CACHE", str(tmp_path / "cache"))
    variables = {"$TEACHER": str(tiny_teacher_dir)}
    for command in commands:
        args = [substitute(arg, variables) for arg in command]
        monkeypatch.setattr(sys, "argv", ["domain-distil", *args, *SHRINK, f"hydra.run.dir=outputs/{task_of(args)}"])
        capsys.readouterr()
        try:
            cli.main()
        finally:
            GlobalHydra.instance().clear()
        if task_of(args) == "distill":  # its last line: the classify command with the student's key
            printed = capsys.readouterr().out
            variables[next(KEY_OF_CORPUS[a] for a in args if a in KEY_OF_CORPUS)] = PRINTED_COMMAND.findall(printed)[-1]

    keys = {name: variables[name] for name in ("$KEY", "$GENERAL_KEY")}
    students = {p.parent.name for p in (tmp_path / "cache" / "students").glob("*/manifest.json")}
    assert students == set(keys.values()) and len(students) == 2
    result = json.loads((tmp_path / "outputs" / "classify" / "results.json").read_text())
    assert result["status"] == "ok" and result["task"] == "my_tags"
    assert result["encoder"]["name_or_path"] == str(tmp_path / "cache" / "students" / keys["$KEY"])
    assert result["encoder"]["id"] == f"distilled-corpus-{keys['$KEY'][:6]}"
    assert 0.0 <= result["test"]["f1"] <= 1.0 and result["split_sizes"] == {"train": 18, "val": 9, "test": 9}

    # The comparison: two students with their default ids and the teacher, three rows, never one.
    ids = [f"distilled-corpus-{keys['$KEY'][:6]}", f"distilled-general-{keys['$GENERAL_KEY'][:6]}", "teacher"]
    runs = json.loads((tmp_path / "outputs" / "report" / "runs.json").read_text())
    assert runs["ok"] == 9 and not runs["failed"] and not runs["duplicates"] and not runs["missing"]
    assert runs["grid"]["my_tags"]["encoders"] == sorted(ids)
    table = (tmp_path / "outputs" / "report" / "table8.md").read_text(encoding="utf-8")
    for encoder_id in ids:
        assert f"| F1-Score | Frozen | {encoder_id} |" in table
    # The page's sample rows, its example key prefixes swapped for this run's, are the report's rows.
    sample = re.search(r"its F1 rows\nread .*?```\n(.*?)```", PAGE.read_text(), re.S).group(1)
    sample = sample.replace("15501f", keys["$KEY"][:6]).replace("729152", keys["$GENERAL_KEY"][:6])
    assert len(sample.splitlines()) == 5
    for line in sample.splitlines():
        assert line.split("…")[0] in table, line
