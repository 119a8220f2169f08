"""Your own conversational-commerce data: unlabeled messages for the corpus and labeled task
files, from JSONL, CSV or Parquet, with PII masked before anything is written.

Schemas and budget sampling (keys from file name and row, as for Stack Exchange):
docs/data-sources.md, "Conversational commerce". Bad rows fail with the file, line/row and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from domain_distil.common.hashing import hash_file, hash_object
from domain_distil.common.io import atomic_open
from domain_distil.common.records import counts_rows, iter_records, task_row, where
from domain_distil.sources.pii import mask_pii
from domain_distil.sources.sampling import BudgetFilter, KeyHistogram, budget_bytes, uniform_key
from domain_distil.sources.streams import MalformedInputError
from domain_distil.sources.writers import PreparedDir, document_line, line_bytes


def _item_id(path: Path, number: int) -> str:
    """A message's sampling identity, file name and position: the sample for a seed depends on it."""
    return f"{path.name}:{'row' if counts_rows(path) else 'line'} {number}"


def _field(at: str, record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MalformedInputError(f"{at}: field {name!r} is missing or empty (fields: {sorted(record)})")
    if not isinstance(value, str):
        raise MalformedInputError(f"{at}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def read_task_rows(path: str | Path, mask: bool) -> Iterator[dict[str, Any]]:
    """Check (``common.records.task_row``, as ``task=classify`` does) and normalise a labeled task file
    row by row. Beyond that check: a row without ``source`` is natural, and a translated row outside
    ``train`` is an error (docs/data-sources.md), not silently left out as ``task=classify`` does; a
    numeric ``label`` (a class id, common in exported data sets) is written as its text."""
    path = Path(path)
    for number, record in iter_records(path, MalformedInputError):
        label = record.get("label")
        numeric = isinstance(label, int | float) and not isinstance(label, bool)
        record = {**record, "source": record.get("source") or "natural", **({"label": str(label)} if numeric else {})}
        row = task_row(record, path, number, MalformedInputError)
        if row["source"] == "translated" and row["split"] != "train":
            raise MalformedInputError(f"{where(path, number)}: translated rows are for training only, "
                                      f"found in {row['split']!r}")
        row["text"] = document_line(mask_pii(row["text"]) if mask else row["text"])
        yield row


class ConversationalBuilder:
    """Builds ``corpus/<lang>.txt`` from message files and ``tasks/<name>.jsonl`` from labeled ones."""

    kind = "conversational"

    def __init__(
        self,
        files: Sequence[str],
        budgets: Mapping[str, float | None] | None = None,
        task_files: Mapping[str, str] | None = None,
        text_field: str = "text",
        lang_field: str = "lang",
        companies: Sequence[str] | None = None,
        exclude_companies: Sequence[str] = (),
        mask_pii: bool = True,
    ) -> None:
        if isinstance(files, str):
            files = [files]
        self.files = [Path(f) for f in files]
        self.budgets = dict(budgets or {})
        self.task_files = {k: Path(v) for k, v in (task_files or {}).items()}
        self.text_field, self.lang_field = text_field, lang_field
        self.companies = set(companies) if companies else None
        self.exclude = set(exclude_companies or ())
        self.mask = bool(mask_pii)

    def _messages(self, langs: set[str] | None) -> Iterator[tuple[str, str, str]]:
        """(lang, item id, line) for every kept message, PII masked; the id is file name + position."""
        for path in self.files:
            for number, record in iter_records(path, MalformedInputError):
                at = where(path, number)
                text = _field(at, record, self.text_field)
                lang = _field(at, record, self.lang_field)
                company = record.get("company")
                if self.companies is not None and company not in self.companies:
                    continue
                if company in self.exclude or (langs is not None and lang not in langs):
                    continue
                line = document_line(mask_pii(text) if self.mask else text)
                if line:
                    yield lang, _item_id(path, number), line

    def build(self, out: PreparedDir, languages: Sequence[str] | None, seed: int) -> dict[str, Any]:
        for path in [*self.files, *self.task_files.values()]:
            if not path.exists():
                raise FileNotFoundError(f"conversational input not found: {path}")
        langs = set(languages) if languages else None
        inputs = [{"path": str(p), "bytes": p.stat().st_size, "sha256": hash_file(p)} for p in self.files]
        fingerprint = hash_object({
            "inputs": inputs, "seed": seed, "budgets": self.budgets, "langs": sorted(langs or []),
            "mask": self.mask, "companies": sorted(self.companies or []), "exclude": sorted(self.exclude),
            "fields": [self.text_field, self.lang_field],
        })
        record = out.resumable("conversational.corpus", fingerprint, self._build_corpus,
                               out, langs, seed, inputs)
        tasks = {}
        for name, path in self.task_files.items():
            counts: dict[str, dict[str, int]] = {}
            with atomic_open(out.task_path(name)) as handle:
                for row in read_task_rows(path, self.mask):
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    key = f"{row['lang']}/{row['split']}/{row['source']}"
                    counts.setdefault(key, {"rows": 0})["rows"] += 1
            tasks[name] = {"file": out.relative(out.task_path(name)),
                           "input": {"path": str(path), "sha256": hash_file(path)}, "rows": counts}
        return {"languages": record["languages"], "tasks": tasks, "inputs": record["inputs"]}

    def _build_corpus(self, out: PreparedDir, langs: set[str] | None, seed: int,
                      inputs: list) -> dict[str, Any]:
        hists: dict[str, KeyHistogram] = {}
        for lang, item, line in self._messages(langs):
            hists.setdefault(lang, KeyHistogram()).add(uniform_key(seed, item), line_bytes(line))
        targets = {lang: budget_bytes(self.budgets.get(lang)) for lang in hists}
        gates = {lang: BudgetFilter(hist.threshold(targets[lang], margin=0.02), targets[lang])
                 for lang, hist in hists.items()}
        with ExitStack() as stack:  # one atomic writer per language, all committed together
            handles = {lang: stack.enter_context(out.corpus_writer(lang)) for lang in gates}
            for lang, item, line in self._messages(langs):
                if gates[lang].accept(uniform_key(seed, item), line_bytes(line)):
                    handles[lang].write(line)
        languages = {lang: {"corpus": w.record() | {"budget_bytes": targets[lang]}}
                     for lang, w in handles.items()}
        return {"languages": languages, "inputs": inputs,
                "outputs": [out.relative(out.corpus_path(lang)) for lang in handles]}
