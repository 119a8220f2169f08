"""Small, learnable task files in the docs/formats.md layout, written by the classification tests.

Intentful messages use request words (order, refund, cancel...), the others greetings; tag posts
mention their tags' keywords. The words are in tests/tiny_models.py's vocabulary, so the tiny
tokenizer keeps them whole.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

INTENT_WORDS = ["order", "refund", "cancel", "delivery", "password", "payment", "track", "package", "account"]
CHAT_WORDS = ["hello", "hi", "thanks", "thank", "you", "yes", "no", "ok", "the", "a"]
TAGS = ["python", "java", "php"]


def _sentence(rng: random.Random, words: list[str], length: int) -> str:
    return " ".join(rng.choice(words) for _ in range(length))


def intent_rows(langs: tuple[str, ...] = ("eng", "esp"), sizes: dict[str, int] | None = None,
                translated: int = 6, seed: int = 0) -> list[dict]:
    """Balanced binary rows per language: natural train/val/test plus translated train (and val)."""
    rng = random.Random(seed)
    sizes = sizes or {"train": 16, "val": 8, "test": 8}
    rows = []
    for lang in langs:
        plan = [(split, "natural", n) for split, n in sizes.items()]
        plan += [("train", "translated", translated), ("val", "translated", 2)]
        for split, source, n in plan:
            for i in range(n):
                intentful = i % 2 == 0
                words = INTENT_WORDS if intentful else CHAT_WORDS
                rows.append({"text": f"{_sentence(rng, words, rng.randint(2, 9))} please" if intentful
                             else _sentence(rng, words, rng.randint(1, 6)),
                             "label": "intentful" if intentful else "not_intentful",
                             "lang": lang, "split": split, "source": source, "id": f"{lang}-{split}-{source}-{i}"})
    return rows


def tag_rows(langs: tuple[str, ...] = ("eng",), n: int = 12, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for lang in langs:
        for split in ("train", "val", "test"):
            for i in range(n):
                tags = [t for j, t in enumerate(TAGS) if (i >> j) & 1] or ["python"]
                text = " ".join(f"{t} code" for t in tags) + " " + _sentence(rng, CHAT_WORDS, 3)
                rows.append({"text": text, "labels": tags, "lang": lang, "split": split, "source": "natural"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "|".join(v) if isinstance(v, list) else v for k, v in row.items()})
    return path


def classify_overrides(encoder_dir: Path, task_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long ``task=classify`` job on the tiny encoder."""
    return [
        "task=classify",
        "encoder=path",
        f"encoder.name_or_path={encoder_dir}",
        f"cls_task.dir={task_dir}",
        "logger=csv",
        "classify.batch_size=8",
        "classify.optimizer.lr=1e-2",
        "classify.trainer.max_epochs=4",
        "head.attention_dim=16",
        "head.num_hops=2",
        "head.hidden_dim=8",
        *extra,
    ]


def write_result(root: Path, encoder: str, lang: str, freeze: bool, seed: int, f1: float | None, status: str = "ok",
                 encoder_hash: str = "abc123", task: str = "cc_intent") -> Path:
    """One results.json exactly as docs/formats.md specifies it (what task=report reads)."""
    mode = "frozen" if freeze else "finetuned"
    path = root / f"encoder={encoder},freeze={freeze},lang={lang}" / f"seed={seed}" / mode / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    scores = None if f1 is None else {"f1": f1, "precision": min(1.0, f1 + 0.05), "recall": f1 - 0.05}
    obj = {
        "task": task,
        "lang": lang,
        "encoder": {"id": encoder, "name_or_path": f"/models/{encoder}", "hash": encoder_hash},
        "freeze": freeze,
        "seed": seed,
        "test": scores,
        "best_val": None if scores is None else {**scores, "epoch": 3},
        "timings": {"fit_s": 1.0},
        "git": {"commit": "unknown"},
        "config": {},
        "status": status,
        "error": None if status == "ok" else "RuntimeError: CUDA out of memory",
    }
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path
