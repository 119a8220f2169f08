"""Task files: labels read from the file (free text), duplicate ids, invalid UTF-8, per-label thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_tasks import write_csv, write_jsonl

from domain_distil.classification.metrics import f1_at, predictions, tune_threshold
from domain_distil.classification.taskfile import TaskFileError, TaskSpec, load_task
from domain_distil.common.errors import ConfigError, UserInputError

ODD_LABELS = ["net::http", "c++ + stl", "two words"]
MULTI = TaskSpec(name="mine", type="multilabel", labels=())


def _rows(n: int = 4, lang: str = "eng") -> list[dict]:
    rows = []
    for split in ("train", "val", "test"):
        for i in range(n):
            labels = [ODD_LABELS[i % 3]] + ([ODD_LABELS[(i + 1) % 3]] if i % 2 else [])
            rows.append({"text": f"{split} row {i}", "labels": labels, "lang": lang, "split": split,
                         "source": "natural", "id": f"{lang}-{split}-{i}"})
    return rows


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_labels_come_from_the_file_sorted_and_free_text(tmp_path: Path, suffix: str) -> None:
    path = (write_jsonl if suffix == "jsonl" else write_csv)(tmp_path / f"t.{suffix}", _rows())
    splits = load_task(MULTI, "eng", [path])
    assert splits.spec.labels == tuple(sorted(ODD_LABELS)) == ("c++ + stl", "net::http", "two words")
    assert splits.spec.num_outputs == 3
    targets = splits.targets("train")
    # Row 1 carries "c++ + stl" and "two words": columns 0 and 2 of the sorted label set.
    assert splits.splits["train"][1].labels == ("c++ + stl", "two words")
    assert targets.shape == (4, 3) and targets[1].tolist() == [1.0, 0.0, 1.0]


def test_binary_labels_from_the_file_put_the_positive_label_first(tmp_path: Path) -> None:
    rows = [{"text": f"m{i}", "label": "not spam" if i % 2 else "spam::yes", "lang": "eng", "split": split,
             "source": "natural"} for split in ("train", "val", "test") for i in range(4)]
    spec = TaskSpec(name="spam", type="binary", labels=(), positive_label="spam::yes")
    splits = load_task(spec, "eng", [write_jsonl(tmp_path / "s.jsonl", rows)])
    assert splits.spec.labels == ("spam::yes", "not spam")
    assert splits.targets("train").tolist() == [1, 0, 1, 0]
    with pytest.raises(TaskFileError, match=r"exactly 2 labels, one of them cls_task.positive_label='ham'"):
        load_task(TaskSpec(name="spam", type="binary", labels=(), positive_label="ham"), "eng",
                  [tmp_path / "s.jsonl"])
    with pytest.raises(ConfigError, match="cls_task.positive_label None .* set it to the label"):
        TaskSpec(name="spam", type="binary", labels=())


def test_duplicate_id_within_a_split_names_both_lines(tmp_path: Path) -> None:
    rows = _rows()
    rows[2]["id"] = rows[1]["id"]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(TaskFileError) as error:
        load_task(MULTI, "eng", [path])
    message = str(error.value)
    assert message.startswith(f"{path}:3: duplicate id 'eng-train-1'") and f"first used at {path}:2" in message
    assert "\n" not in message and isinstance(error.value, UserInputError)


def test_same_id_in_train_and_test_is_a_leak_across_files(tmp_path: Path) -> None:
    rows = _rows()
    train = write_jsonl(tmp_path / "a_train.jsonl", [r for r in rows if r["split"] == "train"])
    rest = [r for r in rows if r["split"] != "train"]
    rest[-1]["id"] = "eng-train-0"
    other = write_csv(tmp_path / "b_rest.csv", rest)
    with pytest.raises(TaskFileError, match=rf"{other}:9: duplicate id 'eng-train-0' .*split 'test'.*"
                                            rf"first used at {train}:1 \(split 'train'\) \(a train/test leak\)"):
        load_task(MULTI, "eng", [train, other])
    # The same id in another language is another row (a translation keeps its source's id).
    both = _rows() + _rows(lang="esp")
    for row in both:
        row["id"] = row["id"].split("-", 1)[1]
    assert load_task(MULTI, "esp", [write_jsonl(tmp_path / "langs.jsonl", both)]).counts()["train"] == 4


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_invalid_utf8_names_file_line_and_byte(tmp_path: Path, suffix: str) -> None:
    path = (write_jsonl if suffix == "jsonl" else write_csv)(tmp_path / f"t.{suffix}", _rows())
    lines = path.read_bytes().split(b"\n")
    bad_line = 3  # 1-based; in the CSV the header is line 1
    lines[bad_line - 1] = lines[bad_line - 1].replace(b"row", b"r\xe9w", 1)  # Latin-1 e-acute
    path.write_bytes(b"\n".join(lines))
    column = lines[bad_line - 1].index(b"\xe9") + 1
    with pytest.raises(TaskFileError) as error:
        load_task(MULTI, "eng", [path])
    assert str(error.value) == (f"{path}:{bad_line}: invalid UTF-8 (byte 0xe9 at byte {column} of the line); "
                                "task files must be UTF-8: re-save the file with that encoding")


def test_per_label_thresholds_beat_one_global_threshold() -> None:
    # Label 0 separates at 0.3, label 1 at 0.7: no single threshold gets both right.
    probs = torch.tensor([[0.35, 0.75], [0.25, 0.65], [0.40, 0.80], [0.20, 0.60]])
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    global_t, global_f1 = tune_threshold(probs, targets, "multilabel")
    per_label, per_label_f1 = tune_threshold(probs, targets, "multilabel", mode="per_label")
    assert isinstance(global_t, float) and global_f1 < 1.0
    assert per_label_f1 == pytest.approx(1.0) and len(per_label) == 2
    assert 0.25 < per_label[0] <= 0.35 and 0.65 < per_label[1] <= 0.75
    logits = torch.logit(probs)
    assert predictions(logits, "multilabel", per_label).tolist() == targets.long().tolist()
    assert f1_at(probs, targets, "multilabel", per_label) == pytest.approx(1.0)
    # A binary task has one label: both modes agree.
    binary = torch.tensor([0.2, 0.7, 0.6, 0.1])
    labels = torch.tensor([0, 1, 1, 0])
    assert tune_threshold(binary, labels, "binary", mode="per_label") == tune_threshold(binary, labels, "binary")


def test_threshold_mode_is_validated() -> None:
    with pytest.raises(ConfigError, match="cls_task.threshold_mode must be one of"):
        TaskSpec(name="t", type="multilabel", labels=("a",), threshold_mode="each")
    assert TaskSpec.from_config({"name": "t", "type": "multilabel", "labels": None, "threshold": "tune",
                                 "threshold_mode": "per_label"}).threshold_mode == "per_label"


def test_generic_task_configs_read_labels_from_the_file(make_cfg) -> None:
    for name, kind in (("multilabel", "multilabel"), ("binary", "binary")):
        cfg = make_cfg(f"cls_task={name}", "cls_task.positive_label=yes" if kind == "binary" else "seed=0")
        assert cfg.cls_task.labels is None and cfg.cls_task.type == kind
        assert cfg.cls_task.dir.endswith(f"tasks/{name}")
        spec = TaskSpec.from_config(cfg.cls_task)
        assert spec.labels == () and spec.threshold_mode == "global"
    assert json.dumps(list(TaskSpec.from_config(make_cfg("cls_task=td_tags").cls_task).labels))
