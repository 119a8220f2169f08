"""Task files: JSONL/CSV reading, the Table 2 split rule, and errors naming file and line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from tiny_tasks import intent_rows, tag_rows, write_csv, write_jsonl

from domain_distil.classification.taskfile import TaskFileError, TaskSpec, load_task

INTENT = TaskSpec(name="cc_intent", type="binary", labels=("intentful", "not_intentful"),
                  positive_label="intentful", languages=("eng", "esp", "jap", "por"))
TAGS = TaskSpec(name="td_tags", type="multilabel", labels=("python", "java", "php"), languages=("eng", "rus"))


def _row(**overrides) -> dict:
    row = {"text": "cancel my order", "label": "intentful", "lang": "eng", "split": "train", "source": "natural"}
    row.update(overrides)
    return row


def test_jsonl_splits_follow_table_2(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cc.jsonl", intent_rows(langs=("eng", "esp"), translated=6))
    splits = load_task(INTENT, "esp", files=[path])
    # train: 16 natural + 6 translated; val: 8 natural (the 2 translated val rows are left out).
    assert splits.counts() == {"train": 22, "val": 8, "test": 8}
    assert {ex.source for ex in splits.splits["train"]} == {"natural", "translated"}
    assert {ex.source for ex in splits.splits["val"]} == {"natural"}
    assert {ex.lang for split in splits.splits.values() for ex in split} == {"esp"}
    targets = splits.targets("test")
    assert targets.dtype == torch.long
    assert targets.tolist() == [int(ex.labels[0] == "intentful") for ex in splits.splits["test"]]
    assert targets.sum().item() == 4


def test_natural_only_training_is_an_option(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cc.jsonl", intent_rows(langs=("eng",)))
    spec = TaskSpec(**{**INTENT.__dict__, "train_sources": ("natural",)})
    assert load_task(spec, "eng", files=[path]).counts()["train"] == 16


def test_csv_multilabel_from_a_directory(tmp_path: Path) -> None:
    write_csv(tmp_path / "tags" / "td.csv", tag_rows(langs=("eng",), n=4))
    splits = load_task(TAGS, "eng", directory=tmp_path / "tags")
    assert splits.counts() == {"train": 4, "val": 4, "test": 4}
    # rows i = 0..3 -> tags from the bits of i: [python], [python], [java], [python, java]
    assert [ex.labels for ex in splits.splits["val"]] == [("python",), ("python",), ("java",), ("python", "java")]
    assert splits.targets("val").tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]


def _error(tmp_path: Path, rows: list[dict], spec: TaskSpec = INTENT, lang: str = "eng", suffix: str = "jsonl") -> str:
    path = tmp_path / f"bad.{suffix}"
    (write_jsonl if suffix == "jsonl" else write_csv)(path, rows)
    with pytest.raises(TaskFileError) as info:
        load_task(spec, lang, files=[path])
    return str(info.value)


def test_unknown_language_names_file_and_line(tmp_path: Path) -> None:
    message = _error(tmp_path, [_row(), _row(), _row(lang="deu")])
    assert re.search(r"bad\.jsonl:3: unknown language 'deu'", message), message


def test_missing_field_names_file_and_line(tmp_path: Path) -> None:
    row = _row()
    del row["split"]
    message = _error(tmp_path, [_row(), row])
    assert re.search(r"bad\.jsonl:2: missing field 'split'", message), message
    message = _error(tmp_path, [_row(label="")])
    assert "bad.jsonl:1: missing field 'label'" in message


def test_label_outside_label_set(tmp_path: Path) -> None:
    message = _error(tmp_path, [_row(), _row(label="maybe")])
    assert "bad.jsonl:2: label 'maybe' is not in the label set" in message
    message = _error(tmp_path, [{**_row(), "labels": ["python", "cobol"]}], spec=TAGS, suffix="csv")
    assert re.search(r"bad\.csv:2: label\(s\) \['cobol'\] not in the label set", message), message


def test_empty_split_names_the_files(tmp_path: Path) -> None:
    rows = [r for r in intent_rows(langs=("eng",)) if r["split"] != "test"]
    message = _error(tmp_path, rows)
    assert "empty split: no 'test' rows with lang='eng'" in message and "bad.jsonl" in message
    # Translated rows alone do not make an evaluation split.
    rows = [r for r in intent_rows(langs=("eng",)) if not (r["split"] == "val" and r["source"] == "natural")]
    assert "no 'val' rows with lang='eng' and source=natural" in _error(tmp_path, rows)


def test_csv_header_json_and_type_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label,lang,split\nhi,intentful,eng,train\n")
    with pytest.raises(TaskFileError, match=r"bad\.csv:1: missing column 'source'"):
        load_task(INTENT, "eng", files=[path])
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(_row()) + "\n{not json\n")
    with pytest.raises(TaskFileError, match=r"broken\.jsonl:2: invalid JSON"):
        load_task(INTENT, "eng", files=[path])
    message = _error(tmp_path, [{**_row(), "labels": "python"}], spec=TAGS)
    assert "bad.jsonl:1: 'labels' must be a list of strings" in message
    message = _error(tmp_path, [_row(split="dev")])
    assert "bad.jsonl:1: split 'dev' is not one of" in message


def test_language_outside_task_and_missing_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cc.jsonl", intent_rows(langs=("eng",)))
    with pytest.raises(TaskFileError, match="unknown language 'rus' for task 'cc_intent'"):
        load_task(INTENT, "rus", files=[path])
    with pytest.raises(TaskFileError, match="not found"):
        load_task(INTENT, "eng", files=[tmp_path / "nope.jsonl"])
    with pytest.raises(TaskFileError, match="does not exist"):
        load_task(INTENT, "eng", directory=tmp_path / "nowhere")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="positive_label"):
        TaskSpec(name="x", type="binary", labels=("a", "b"), positive_label="c")
    with pytest.raises(ValueError, match="exactly 2 labels"):
        TaskSpec(name="x", type="binary", labels=("a", "b", "c"), positive_label="a")
    with pytest.raises(ValueError, match="threshold"):
        TaskSpec(name="x", type="multilabel", labels=("a",), threshold=1.5)
    assert TaskSpec(name="x", type="multilabel", labels=("a", "b", "c"), threshold="tune").num_outputs == 3


def test_content_hash_follows_the_kept_rows(tmp_path: Path) -> None:
    rows = intent_rows(langs=("eng", "esp"))
    base = load_task(INTENT, "eng", files=[write_jsonl(tmp_path / "a.jsonl", rows)]).content_hash()
    # Another language's rows do not change this language's data identity...
    other = [dict(r, text=r["text"] + " x") if r["lang"] == "esp" else r for r in rows]
    assert load_task(INTENT, "eng", files=[write_jsonl(tmp_path / "b.jsonl", other)]).content_hash() == base
    # ...one flipped label does.
    flipped = [dict(r) for r in rows]
    flipped[0]["label"] = "not_intentful"
    assert load_task(INTENT, "eng", files=[write_jsonl(tmp_path / "c.jsonl", flipped)]).content_hash() != base
    # Labels read from the files: a label new in another language's rows changes this language's head.
    own = TaskSpec(name="tags", type="multilabel", labels=())
    tags = tag_rows(langs=("eng", "rus"))
    before = load_task(own, "eng", files=[write_jsonl(tmp_path / "d.jsonl", tags)])
    tags[-1] = {**tags[-1], "labels": ["cobol"]}  # a Russian test row
    after = load_task(own, "eng", files=[write_jsonl(tmp_path / "e.jsonl", tags)])
    assert after.spec.labels == ("cobol", "java", "php", "python") and after.content_hash() != before.content_hash()


def test_csv_row_with_surplus_cells_names_its_line(tmp_path):
    from domain_distil.classification.taskfile import TaskFileError, _read_rows

    path = tmp_path / "extra.csv"
    path.write_text("text,label,lang,split,source\nhi,intentful,eng,train,natural\nhi,intentful,eng,train,natural,oops\n")
    with pytest.raises(TaskFileError, match=r"extra\.csv:3: more cells than the header has columns"):
        list(_read_rows(path))


def test_a_task_file_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    # Parsed files are kept per content in the process (a worker runs many jobs of one task);
    # a file edited between two jobs, even to the same size, must never be served from memory.
    path = write_jsonl(tmp_path / "cc.jsonl", intent_rows())
    first = load_task(INTENT, "eng", [path])
    assert load_task(INTENT, "eng", [path]).splits["train"] is not first.splits["train"]  # fresh lists per job
    text = path.read_text(encoding="utf-8")
    assert '"intentful"' in text
    before = path.stat()
    path.write_text(text.replace('"not_intentful"', '"NOT_intentful"', 1), encoding="utf-8")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same time: only the bytes differ
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(TaskFileError, match="NOT_intentful"):
        load_task(INTENT, "eng", [path])


# A task of your own (cls_task=binary / multilabel): no language list, labels read from the files.
OWN_BINARY = TaskSpec(name="spam", type="binary", labels=(), positive_label="spam")


def _own_rows(langs: tuple[str, ...]) -> list[dict]:
    return [{**row, "label": "spam" if row["label"] == "intentful" else "ham"} for row in intent_rows(langs=langs)]


def test_own_task_row_in_an_unknown_language_names_its_line(tmp_path: Path) -> None:
    rows = _own_rows(("eng",))
    rows[5]["lang"] = "en"  # a typo of eng: before, no job read the row and nothing said so
    message = _error(tmp_path, rows, spec=OWN_BINARY)
    assert message.startswith(f"{tmp_path / 'bad.jsonl'}:6: unknown language 'en'; the known languages are "
                              "eng, esp, jap, por, rus"), message
    assert "cls_task.languages" in message


def test_rows_of_other_known_languages_are_counted_in_one_line(tmp_path: Path, caplog) -> None:
    path = write_jsonl(tmp_path / "spam.jsonl", _own_rows(("eng", "esp", "jap"))[:-5])  # jap: 5 rows fewer
    with caplog.at_level("INFO", logger="domain_distil.classification.taskfile"):
        splits = load_task(OWN_BINARY, "esp", files=[path])
    assert splits.counts() == {"train": 22, "val": 8, "test": 8}
    skipped = [r.getMessage() for r in caplog.records if "other languages" in r.getMessage()]
    # eng and jap each wrote 40 rows (16 + 8 + 8 natural, 6 + 2 translated); jap lost its last 5.
    assert skipped == ["spam/esp: 75 rows of other languages not used by this job (each job reads one "
                       "language): eng 40, jap 35"]


def test_third_label_of_a_binary_task_names_its_line(tmp_path: Path) -> None:
    rows = _own_rows(("eng",))
    rows[9]["label"] = "Spam"
    message = _error(tmp_path, rows, spec=OWN_BINARY)
    assert message == (f"{tmp_path / 'bad.jsonl'}:10: label 'Spam' makes a third label, but a binary task has "
                       "exactly 2; the files use 'Spam' (1 rows), 'ham' (19 rows), 'spam' (20 rows): fix the rows "
                       "with 'Spam', or use cls_task=multilabel")


def test_lang_name_runs_a_language_without_a_config(make_cfg, tmp_path: Path) -> None:
    """docs/own-data.md: ``lang.name=deu`` classifies German rows although conf/lang has no deu.yaml."""
    from domain_distil.stages.classify import classify_job

    path = write_jsonl(tmp_path / "spam.jsonl", _own_rows(("deu", "eng")))
    job = classify_job(make_cfg("task=classify", "cls_task=binary", "cls_task.name=spam",
                                "cls_task.positive_label=spam", f"cls_task.files=[{path}]", "lang.name=deu"))
    splits = load_task(job.task, job.lang, job.task_files, job.task_dir)
    assert splits.lang == "deu" and splits.counts() == {"train": 22, "val": 8, "test": 8}
