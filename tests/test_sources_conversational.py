"""Conversational files (JSONL / CSV / Parquet), PII masking, labeled task files, budgets."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

import pytest

from domain_distil.classification.taskfile import TaskFileError, TaskSpec, load_examples
from domain_distil.common.errors import UserInputError
from domain_distil.common.records import iter_records
from domain_distil.sources.conversational import ConversationalBuilder, read_task_rows
from domain_distil.sources.pii import luhn_ok, mask_pii
from domain_distil.sources.streams import MalformedInputError
from domain_distil.sources.writers import PreparedDir, line_bytes
from domain_distil.tasks import prepare


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+shop@mail.example.co.uk please", "write to [EMAIL] please"),
        ("call me on +1 (555) 123-4567 or 555.123.4567", "call me on [PHONE] or [PHONE]"),
        ("my card is 4111 1111 1111 1111, expiry soon", "my card is [CARD], expiry soon"),
        ("card 5500-0000-0000-0004 declined", "card [CARD] declined"),
        ("reset via https://shop.example.com/reset?token=9f8e7d6c5b now", "reset via [URL] now"),
        ("track at https://t.example.com/p/AbCdEfGhIjKlMnOpQrSt", "track at [URL]"),
        # Not PII: a plain help link, an order number failing Luhn, a date, prices, small counts.
        ("see https://shop.example.com/help", "see https://shop.example.com/help"),
        ("order 1234567890123 arrived", "order 1234567890123 arrived"),
        ("ordered 3 items for 25.99 on 2023-05-01", "ordered 3 items for 25.99 on 2023-05-01"),
    ],
)
def test_mask_pii(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


def messages(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    langs = ["eng"] * 5 + ["esp"] * 3 + ["por"] * 2
    return [
        {
            "text": f"msg{i} "
            + " ".join(
                rng.choice(["hi", "order", "refund", "where", "is", "my"]) for _ in range(rng.randint(5, 40))
            )
            + (f" mail me at user{i}@example.com" if i % 7 == 0 else ""),
            "lang": rng.choice(langs),
            "company": f"c{i % 5}",
            "sub_domain": "retail",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_formats_read_the_same_records(tmp_path: Path) -> None:
    rows = messages(20)
    a = [r for _, r in iter_records(write_jsonl(tmp_path / "m.jsonl", rows))]
    b = [r for _, r in iter_records(write_csv(tmp_path / "m.csv", rows))]
    assert a == rows and b == rows
    import pyarrow as pa  # a declared dependency: a missing install must fail, not skip
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    assert [r for _, r in iter_records(tmp_path / "m.parquet")] == rows
    data = (tmp_path / "m.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedInputError, match=r"cut\.parquet: unreadable Parquet after row 0"):
        list(iter_records(tmp_path / "cut.parquet", MalformedInputError))


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"text": "a", "lang": "eng"}\n{"text": "b", "lang": \n')
    with pytest.raises(MalformedInputError, match=r"m\.jsonl:2: invalid JSON \(Expecting value at column \d+\)"):
        list(iter_records(path, MalformedInputError))
    path.write_text('{"text": "a", "lang": "eng"}\n{"lang": "eng"}\n')
    builder = ConversationalBuilder([str(path)])
    with pytest.raises(MalformedInputError, match=r"m\.jsonl:2: field 'text' is missing"):
        builder.build(PreparedDir(tmp_path / "out"), None, seed=0)
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("text,label,lang,split,source\nhello,intentful,eng,test,translated\n")
    with pytest.raises(MalformedInputError, match=r"t\.csv:2: translated rows are for training only"):
        list(read_task_rows(csv_path, mask=True))


def test_parquet_errors_name_the_row_and_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "a", "lang": "eng"}, {"text": "", "lang": "eng"}]), path)
    with pytest.raises(MalformedInputError, match=r"m\.parquet: row 2: field 'text' is missing"):
        ConversationalBuilder([str(path)]).build(PreparedDir(tmp_path / "out"), None, seed=0)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(UserInputError, match=r"m\.parquet: reading \.parquet needs pyarrow \(pip install pyarrow\)"):
        list(iter_records(path, MalformedInputError))


def test_prepare_and_classify_check_task_rows_alike(tmp_path: Path) -> None:
    # One checker (common.records.task_row): a CSV labels cell is split on | and stripped, repeats
    # dropped, an empty cell is zero labels; task=prepare's output reads in task=classify as the input does.
    rows = [{"text": f"post {i}", "labels": cell, "lang": "eng", "split": split, "source": "natural"}
            for i, (cell, split) in enumerate([("python | java|python", "train"), ("", "val"), ("php", "test")])]
    path = write_csv(tmp_path / "tags.csv", rows)
    prepared = list(read_task_rows(path, mask=False))
    assert [r["labels"] for r in prepared] == [["python", "java"], [], ["php"]]
    spec = TaskSpec(name="tags", type="multilabel", labels=("java", "php", "python"))
    direct = load_examples([path], spec)
    via_prepare = load_examples([write_jsonl(tmp_path / "tags.jsonl", prepared)], spec)
    assert [e.labels for e in direct] == [("python", "java"), (), ("php",)]
    assert [(e.text, e.labels, e.split) for e in via_prepare] == [(e.text, e.labels, e.split) for e in direct]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**rows[0], "labels": "python|java"}])  # | only in CSV
    with pytest.raises(MalformedInputError, match=r"bad\.jsonl:1: 'labels' must be a list of strings"):
        list(read_task_rows(bad, mask=False))
    with pytest.raises(TaskFileError, match=r"bad\.jsonl:1: 'labels' must be a list of strings"):
        load_examples([bad], spec)


def test_task_files_are_validated_and_masked(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "intent.csv",
        [
            {
                "text": "Where is my order? call +44 20 7946 0958",
                "label": "intentful",
                "lang": "eng",
                "split": "train",
                "source": "translated",
                "id": "m1",
            },
            {
                "text": "thanks!",
                "label": "not intentful",
                "lang": "esp",
                "split": "test",
                "source": "",
                "id": "",
            },
        ],
    )
    rows = list(read_task_rows(path, mask=True))
    assert rows == [
        {
            "text": "Where is my order? call [PHONE]",
            "label": "intentful",
            "lang": "eng",
            "split": "train",
            "source": "translated",
            "id": "m1",
        },
        {"text": "thanks!", "label": "not intentful", "lang": "esp", "split": "test", "source": "natural"},
    ]
    multi = write_jsonl(
        tmp_path / "tags.jsonl", [{"text": "x", "labels": ["a", "b"], "lang": "eng", "split": "val"}]
    )
    assert list(read_task_rows(multi, mask=False))[0]["labels"] == ["a", "b"]
    # A numeric class id (JSON/Parquet exports) is prepared as its text, which task=classify reads.
    ids = write_jsonl(tmp_path / "ids.jsonl", [{"text": "x", "label": 3, "lang": "eng", "split": "train"}])
    assert list(read_task_rows(ids, mask=False))[0]["label"] == "3"


def test_prepare_conversational_budgets_and_pii(make_cfg, tmp_path: Path) -> None:
    files = [
        write_jsonl(tmp_path / "a.jsonl", messages(900, 1)),
        write_csv(tmp_path / "b.csv", messages(900, 2)),
    ]
    labeled = write_jsonl(
        tmp_path / "intent.jsonl",
        [
            {"text": f"mail x{i}@y.com please", "label": "intentful", "lang": "eng", "split": "test"}
            for i in range(3)
        ],
    )
    cfg = make_cfg(
        "task=prepare",
        "corpus=conversational",
        f"corpus.source.files=[{files[0]},{files[1]}]",
        f"corpus.source.task_files={{cc_intent:{labeled}}}",
        "corpus.languages=[eng,esp,por]",
        "corpus.source.budgets.eng=3e-5",
        "corpus.source.budgets.esp=2e-5",
        "corpus.source.budgets.por=null",
        "corpus.source.exclude_companies=[c4]",
    )
    manifest = prepare.run(cfg)
    corpus = Path(cfg.corpus.dir)
    all_por = [
        m
        for f, rows in ((0, messages(900, 1)), (1, messages(900, 2)))
        for m in rows
        if m["lang"] == "por" and m["company"] != "c4"
    ]
    for lang, budget in (("eng", 30_000), ("esp", 20_000)):
        text = (corpus / f"{lang}.txt").read_text()
        got = sum(line_bytes(x) for x in text.splitlines())
        assert abs(got - budget) <= 0.01 * budget and got <= budget
        assert manifest["languages"][lang]["corpus"]["bytes"] == got
        assert "@example.com" not in text and "[EMAIL]" in text
    assert len((corpus / "por.txt").read_text().splitlines()) == len(all_por)  # no budget: everything
    assert not (corpus / "jap.txt").exists()
    task = [
        json.loads(x)
        for x in (Path(cfg.corpus.prepared_dir) / "tasks" / "cc_intent.jsonl").read_text().splitlines()
    ]
    assert [r["text"] for r in task] == ["mail [EMAIL] please"] * 3
    assert manifest["tasks"]["cc_intent"]["rows"] == {"eng/test/natural": {"rows": 3}}
    assert len(manifest["inputs"]) == 2 and all(len(i["sha256"]) == 64 for i in manifest["inputs"])
