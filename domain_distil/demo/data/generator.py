"""Write the demo data set: unlabeled in-domain and general corpora plus two labeled tasks.

Layout and formats: docs/demo-data.md. Every file is a pure function of the seed and the settings.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rich.progress import Progress

from domain_distil.common.io import MANIFEST, atomic_open, read_json, write_json
from domain_distil.common.locking import build_entry
from domain_distil.demo.data import cc, general, td
from domain_distil.demo.data.render import fresh, stream

# One JSON file per language: its templates and slot values, {"cc": ..., "td": ..., "general": ...}.
_LANG_DIR = Path(__file__).resolve().parent / "lang"
LANGUAGES = tuple(sorted(p.stem for p in _LANG_DIR.glob("*.json")))
# 2: the in-domain corpus holds the tasks' own text kinds (customer turns, question posts).
VERSION = 2


def load_language(lang: str) -> dict[str, Any]:
    """The templates and slot values of ``lang`` (``lang/<lang>.json``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"demo data: no resources for language {lang!r}; available: {list(LANGUAGES)}")
    return read_json(_LANG_DIR / f"{lang}.json")


def _unique(make: Callable[[], tuple[str, Any]], seen: set[str], tries: int = 50) -> tuple[str, Any]:
    """Draw until the text is new (templates repeat; an exact train/test overlap would leak)."""
    for _ in range(tries):
        text, label = make()
        if text not in seen:
            seen.add(text)
            return text, label
    return text, label  # the template space is exhausted for tiny languages: allow a repeat


def _cc_rows(res: dict[str, Any], lang: str, seed: int, sizes: dict[str, int], n_translated: int,
             noise: float, seen: set[str]) -> list[dict]:
    rng, flip = stream(seed, lang, "cc"), stream(seed, lang, "cc-noise")
    # (split, source, id part, rows, maker): the natural splits, then the translated training rows
    parts = [(split, "natural", split, n, cc.customer_message) for split, n in sizes.items()]
    if res["translated_intent"]:
        parts.append(("train", "translated", "translated", n_translated, cc.translated_message))
    rows = []
    for split, source, id_part, n, maker in parts:
        make = partial(maker, res, rng, lang)
        for i in range(n):
            text, label = _unique(make, seen)
            if flip.random() < noise:
                label = cc.NOT_INTENTFUL if label == cc.INTENTFUL else cc.INTENTFUL
            rows.append({"text": text, "label": label, "lang": lang, "split": split, "source": source,
                         "id": f"cc-{lang}-{id_part}-{i:05d}"})
    return rows


def _noisy_tags(tags: list[str], rng: random.Random, noise: float) -> list[str]:
    """Annotation noise on a tag set: a tag forgotten or a wrong one added."""
    if rng.random() >= noise:
        return tags
    if tags and rng.random() < 0.5:
        return sorted(set(tags) - {rng.choice(tags)})
    return sorted({*tags, rng.choice([t for t in td.TAGS if t not in tags])})


def _td_rows(res: dict[str, Any], lang: str, seed: int, sizes: dict[str, int], noise: float,
             seen: set[str]) -> list[dict]:
    rng, flip = stream(seed, lang, "td"), stream(seed, lang, "td-noise")
    make = partial(td.post, res, rng, lang)
    rows = []
    for split, n in sizes.items():
        for i in range(n):
            text, tags = _unique(make, seen)
            rows.append({"text": text, "labels": _noisy_tags(tags, flip, noise), "lang": lang, "split": split,
                         "source": "natural", "id": f"td-{lang}-{split}-{i:05d}"})
    return rows


def _in_domain_document(res: dict[str, Any], rng: random.Random, lang: str, seen: set[str]) -> str:
    """The same source as the tasks, disjoint items: the text kinds the tasks classify."""
    if rng.random() < 0.5:
        return cc.customer_turns(res["cc"], rng, lang, seen)
    return fresh(partial(td.post, res["td"], rng, lang), seen)


def _write_corpus(path: Path, make: Callable[[], str], target_bytes: int) -> None:
    written = 0
    with atomic_open(path) as handle:
        while written < target_bytes:
            line = " ".join(make().split())  # one document per line, no stray whitespace
            if line:
                handle.write(line + "\n")
                written += len(line.encode("utf-8")) + 1


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _file_info(root: Path) -> dict[str, dict]:
    """Hash, size and line count of every data file, in one chunked pass each (constant memory)."""
    info = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest, size, lines = hashlib.sha256(), 0, 0
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")  # every line, the last included, ends in "\n"
        info[str(file.relative_to(root))] = {"sha256": digest.hexdigest(), "bytes": size, "lines": lines}
    return info


def generate_demo_data(
    out_dir: str | Path,
    seed: int = 0,
    *,
    languages: Sequence[str] = LANGUAGES,
    corpus_mb_per_lang: float = 0.4,
    general_mb_per_lang: float | None = None,
    n_train: int = 1000,
    n_val: int = 300,
    n_test: int = 600,
    n_translated: int | None = None,
    label_noise: float = 0.1,
) -> dict:
    """Generate (or reuse) the demo data under ``out_dir`` and return its manifest."""
    languages = list(languages)
    if not languages:
        raise ValueError("demo data: no languages requested")
    resources = {lang: load_language(lang) for lang in languages}
    if min(n_train, n_val, n_test) < 1 or corpus_mb_per_lang <= 0 or not 0 <= label_noise < 0.5:
        raise ValueError(
            "demo data: need n_train, n_val, n_test >= 1, corpus_mb_per_lang > 0 and 0 <= label_noise < 0.5; "
            f"got {n_train}, {n_val}, {n_test}, {corpus_mb_per_lang}, {label_noise}"
        )
    settings = {
        "version": VERSION, "seed": seed, "languages": languages, "corpus_mb_per_lang": corpus_mb_per_lang,
        "general_mb_per_lang": general_mb_per_lang if general_mb_per_lang is not None else corpus_mb_per_lang,
        "n_train": n_train, "n_val": n_val, "n_test": n_test,
        "n_translated": n_translated if n_translated is not None else n_train, "label_noise": label_noise,
    }

    manifest: dict = {}  # the entry's: read by a hit, else the one _generate wrote (no re-read)

    def same_settings(path: Path) -> bool:  # data with other settings is stale: build_entry replaces it
        found = read_json(path / MANIFEST) if (path / MANIFEST).is_file() else {}
        if found.get("settings") != settings:
            return False
        manifest.update(found)
        return True

    def build(tmp: Path) -> None:
        manifest.update(_generate(tmp, resources, settings))

    build_entry(out_dir, build, is_complete=same_settings)
    return manifest


def _generate(root: Path, resources: dict[str, dict[str, Any]], settings: dict) -> dict:
    seed, noise = settings["seed"], settings["label_noise"]
    sizes = {"train": settings["n_train"], "val": settings["n_val"], "test": settings["n_test"]}
    cc_rows: list[dict] = []
    td_rows: list[dict] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("generating demo data", total=3 * len(resources))
        for lang, res in resources.items():
            seen: set[str] = set()
            cc_rows += _cc_rows(res["cc"], lang, seed, sizes, settings["n_translated"], noise, seen)
            td_rows += _td_rows(res["td"], lang, seed, sizes, noise, seen)
            progress.advance(task)
            _write_corpus(root / "in_domain" / f"{lang}.txt",
                          partial(_in_domain_document, res, stream(seed, lang, "in_domain"), lang, seen),
                          int(settings["corpus_mb_per_lang"] * 1e6))
            progress.advance(task)
            _write_corpus(root / "general" / f"{lang}.txt",
                          partial(general.paragraph, res["general"], stream(seed, lang, "general"), lang),
                          int(settings["general_mb_per_lang"] * 1e6))
            progress.advance(task)
    _write_jsonl(root / "tasks" / "cc_intent.jsonl", cc_rows)
    _write_jsonl(root / "tasks" / "td_tags.jsonl", td_rows)
    counts = {
        "cc_intent": dict(sorted(Counter(f"{r['lang']}/{r['split']}/{r['source']}" for r in cc_rows).items())),
        "td_tags": dict(sorted(Counter(f"{r['lang']}/{r['split']}" for r in td_rows).items())),
    }
    manifest = {"kind": "demo_data", "settings": settings, "files": _file_info(root),
                "counts": counts, "cc_labels": list(cc.LABELS), "td_tags": list(td.TAGS)}
    write_json(root / MANIFEST, manifest)
    return manifest
