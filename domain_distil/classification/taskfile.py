"""Labeled task files (docs/formats.md): reading, validation and the per-language splits.

Every row is checked before any model is loaded; an error names the file, the line and what was
expected. Splits follow the paper's Table 2: a language trains on its natural *and* translated
``train`` rows and is evaluated on natural rows only (translated ``val``/``test`` rows are
dropped), so translated data never inflates a reported score.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from domain_distil.classification.metrics import THRESHOLD_MODES
from domain_distil.common.configs import group_options
from domain_distil.common.errors import ConfigError, UserInputError
from domain_distil.common.hashing import hash_file, hash_object
from domain_distil.common.records import SOURCES, SPLITS, iter_records, task_row, where

log = logging.getLogger(__name__)

TASK_TYPES = ("binary", "multilabel")
REQUIRED_FIELDS = ("text", "lang", "split", "source")
SUFFIXES = (".jsonl", ".csv")


class TaskFileError(UserInputError):
    """A task file (or the set of them) does not follow docs/formats.md."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task file must contain; built from the ``cls_task`` config group.

    Empty ``labels``: every label the task files use (:func:`read_task`). ``threshold``: on the
    positive-class / per-label probability, or ``"tune"`` (``threshold_mode`` says how:
    ``classification.metrics.tune_threshold``). ``train_sources``: which ``train`` rows are trained on.
    """

    name: str
    type: str
    labels: tuple[str, ...]
    positive_label: str | None = None
    languages: tuple[str, ...] | None = None
    max_length: int = 128
    threshold: float | str = 0.5
    train_sources: tuple[str, ...] = SOURCES
    threshold_mode: str = "global"

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise ConfigError(f"cls_task.type must be one of {TASK_TYPES}, got {self.type!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"cls_task.labels must be distinct, got {list(self.labels)}")
        if self.type == "binary":
            if self.labels and len(self.labels) != 2:
                raise ConfigError(f"a binary task needs exactly 2 labels, got {list(self.labels)}")
            if self.positive_label is None or self.labels and self.positive_label not in self.labels:
                raise ConfigError(f"cls_task.positive_label {self.positive_label!r} is not one of "
                                  f"{list(self.labels) or 'the labels'}: set it to the label that counts as positive")
        if not (self.threshold == "tune" or isinstance(self.threshold, float | int) and 0 < self.threshold < 1):
            raise ConfigError(f"cls_task.threshold must be a number in (0, 1) or 'tune', got {self.threshold!r}")
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ConfigError(f"cls_task.threshold_mode must be one of {THRESHOLD_MODES}, got {self.threshold_mode!r}")
        if not self.train_sources or not set(self.train_sources) <= set(SOURCES):
            raise ConfigError(f"cls_task.train_sources must be a non-empty subset of {SOURCES}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TaskSpec:
        languages = cfg.get("languages")
        threshold = cfg.get("threshold", 0.5)
        return cls(
            name=str(cfg["name"]),
            type=str(cfg["type"]),
            labels=tuple(str(label) for label in cfg.get("labels") or ()),
            positive_label=cfg.get("positive_label"),
            languages=tuple(languages) if languages else None,
            max_length=int(cfg.get("max_length", 128)),
            threshold=threshold if threshold == "tune" else float(threshold),
            train_sources=tuple(cfg.get("train_sources") or SOURCES),
            threshold_mode=str(cfg.get("threshold_mode") or "global"),
        )

    @property
    def num_outputs(self) -> int:
        """Logits the head produces: 2 for binary (softmax), one per label for multi-label."""
        return 2 if self.type == "binary" else len(self.labels)


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[str, ...]  # exactly one for a binary task
    lang: str
    split: str
    source: str
    id: str | None
    origin: str  # "file:line", for messages


@dataclass
class TaskSplits:
    """Examples of one language, split as the paper does (train: natural + translated)."""

    spec: TaskSpec
    lang: str
    splits: dict[str, list[Example]] = field(default_factory=dict)

    def texts(self, split: str) -> list[str]:
        return [example.text for example in self.splits[split]]

    def targets(self, split: str) -> torch.Tensor:
        """Binary: class indices (1 = positive label). Multi-label: multi-hot float rows."""
        examples = self.splits[split]
        if self.spec.type == "binary":
            return torch.tensor([int(ex.labels[0] == self.spec.positive_label) for ex in examples], dtype=torch.long)
        index = {label: i for i, label in enumerate(self.spec.labels)}
        target = torch.zeros(len(examples), len(self.spec.labels))
        for row, example in enumerate(examples):
            for label in example.labels:
                target[row, index[label]] = 1.0
        return target

    def content_hash(self) -> str:
        """Hash of every kept row (text, labels, split, source), in order, and of the label set: the
        job's data identity. The label set is the head's output order; read from the files, it can
        change through another language's rows while this language's rows stay the same."""
        rows = {split: [(ex.text, ex.labels, ex.source) for ex in kept] for split, kept in self.splits.items()}
        return hash_object({"labels": list(self.spec.labels), **rows})

    def counts(self) -> dict[str, int]:
        return {split: len(rows) for split, rows in self.splits.items()}


def resolve_task_files(files: Sequence[str | Path] | None, directory: str | Path | None) -> list[Path]:
    """Explicit ``files`` win; otherwise every ``*.jsonl``/``*.csv`` directly under ``directory``."""
    if files:
        paths = [Path(f) for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise TaskFileError(f"task file(s) not found: {', '.join(missing)}")
        return paths
    if not directory:
        raise TaskFileError("no task files: set cls_task.files (a list) or cls_task.dir (a folder)")
    root = Path(directory)
    if not root.is_dir():
        raise TaskFileError(f"task folder {root} does not exist (cls_task.dir)")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    if not paths:
        raise TaskFileError(f"task folder {root} holds no .jsonl or .csv files")
    return paths


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, raw row). CSV ``labels`` cells stay strings until parsing."""
    if path.suffix not in SUFFIXES:
        raise TaskFileError(f"{path}: unsupported task file type {path.suffix!r} (expected {SUFFIXES})")
    try:
        yield from iter_records(path, TaskFileError, required_columns=REQUIRED_FIELDS if path.suffix == ".csv" else ())
    except UnicodeDecodeError:
        line, column, byte = first_invalid_utf8(path)
        raise TaskFileError(
            f"{path}:{line}: invalid UTF-8 (byte 0x{byte:02x} at byte {column} of the line); "
            "task files must be UTF-8: re-save the file with that encoding"
        ) from None


def first_invalid_utf8(path: Path) -> tuple[int, int, int]:
    """(line, 1-based byte offset in that line, byte value) of the first byte that is not UTF-8; only
    called after a decode failed, so the happy path never reads a file twice."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return number, error.start + 1, raw[error.start]
    raise TaskFileError(f"{path}: not valid UTF-8")  # a sequence cut at the very end of the file


def _labels(row: dict[str, Any], at: str, spec: TaskSpec) -> tuple[str, ...]:
    """The labels of a checked row (:func:`task_row`) that the task reads, not yet checked against its set."""
    name = "label" if spec.type == "binary" else "labels"
    if name not in row:
        kind = "binary" if spec.type == "binary" else "multi-label"
        raise TaskFileError(f"{at}: missing field {name!r} ({kind} task {spec.name!r})")
    return (row["label"],) if spec.type == "binary" else tuple(row["labels"])


def parse_row(row: dict[str, Any], at: str, spec: TaskSpec) -> Example:
    """A checked row (:func:`task_row`) as an example of ``spec``; every problem names ``at``."""
    if spec.languages is not None and row["lang"] not in spec.languages:
        raise TaskFileError(f"{at}: unknown language {row['lang']!r} (task {spec.name!r} has "
                            f"{list(spec.languages)})")
    labels = _labels(row, at, spec)
    unknown = [label for label in labels if label not in spec.labels]
    if unknown and spec.type == "binary":
        raise TaskFileError(f"{at}: label {unknown[0]!r} is not in the label set {list(spec.labels)}")
    if unknown:
        raise TaskFileError(f"{at}: label(s) {unknown} not in the label set {list(spec.labels)} "
                            "(cls_task.labels; null takes the labels from the task files)")
    return Example(text=row["text"], labels=labels, lang=row["lang"], split=row["split"], source=row["source"],
                   id=row.get("id"), origin=at)


def labels_from_files(rows: Sequence[tuple[Path, str, dict[str, Any]]], spec: TaskSpec) -> TaskSpec:
    """``spec`` with the label set the task files use: sorted; a binary task's positive label first."""
    uses: Counter[str] = Counter()
    first_at: dict[str, str] = {}  # label -> "file:line" of its first row
    for _, at, row in rows:
        for label in _labels(row, at, spec):
            uses[label] += 1
            first_at.setdefault(label, at)
    names = ", ".join(sorted({str(path) for path, _, _ in rows}))
    if spec.type == "binary":
        used = ", ".join(f"{label!r} ({count} rows)" for label, count in sorted(uses.items()))
        if len(uses) > 2:
            # Most likely a typo of one of the others ("Spam" beside "spam"): name the rarest at its
            # first line, so the user can fix that row.
            rare = min(sorted(uses), key=lambda label: uses[label])
            raise TaskFileError(
                f"{first_at[rare]}: label {rare!r} makes a third label, but a binary task has exactly 2; "
                f"the files use {used}: fix the rows with {rare!r}, or use cls_task=multilabel"
            )
        if spec.positive_label not in uses or len(uses) != 2:
            raise TaskFileError(
                f"{names}: a binary task needs exactly 2 labels, one of them cls_task.positive_label="
                f"{spec.positive_label!r}; the files use {used or 'no label'}"
            )
        labels = (spec.positive_label, *sorted(set(uses) - {spec.positive_label}))
    else:
        if not uses:
            raise TaskFileError(f"{names}: no labels in any row")
        labels = tuple(sorted(uses))
    log.info("%s: %d labels from the task files: %s", spec.name, len(labels), list(labels))
    return replace(spec, labels=labels)


def check_unique_ids(examples: Sequence[Example]) -> None:
    """An id may occur once per language, across every split and file (docs/formats.md).

    A repeated id is a duplicated row at best; in ``train`` and ``test`` it is a leak that scores
    the model on a row it was trained on.
    """
    seen: dict[tuple[str, str], Example] = {}
    for example in examples:
        if example.id is None:
            continue
        first = seen.setdefault((example.lang, example.id), example)
        if first is not example:
            leak = " (a train/test leak)" if {first.split, example.split} >= {"train", "test"} else ""
            raise TaskFileError(
                f"{example.origin}: duplicate id {example.id!r} (lang {example.lang!r}, split {example.split!r}), "
                f"first used at {first.origin} (split {first.split!r}){leak}; give every row of a language "
                "its own id, or remove the repeated row"
            )


def read_task(paths: Sequence[Path], spec: TaskSpec) -> tuple[TaskSpec, list[Example]]:
    """Read and validate every row of every file (all languages: a bad row fails every job).

    Returns the spec with its label set resolved and the examples (shared between calls: treat
    them as read-only). The result is cached per spec and per file *content*, not file times (they
    tick coarsely on some file systems), so a process running many jobs of one task parses once.
    """
    files = tuple(Path(path) for path in paths)  # once per file: a Path per row was most of the read time
    digests = tuple((str(path), _content_digest(path)) for path in files)
    return _read_task_cached(digests, files, spec)


def _content_digest(path: Path) -> str:
    try:
        return hash_file(path)
    except OSError:  # reading it fails with the reader's message, naming the file
        return ""


@lru_cache(maxsize=8)
def _read_task_cached(digests: tuple[tuple[str, str], ...], files: tuple[Path, ...],
                      spec: TaskSpec) -> tuple[TaskSpec, list[Example]]:
    rows = [(path, where(path, line), task_row(raw, path, line, TaskFileError))
            for path in files for line, raw in _read_rows(path)]
    if not spec.labels:
        spec = labels_from_files(rows, spec)
    examples = [parse_row(row, at, spec) for _, at, row in rows]
    check_unique_ids(examples)
    return spec, examples


def load_examples(paths: Sequence[Path], spec: TaskSpec) -> list[Example]:
    """The validated examples of every file (see :func:`read_task`)."""
    return read_task(paths, spec)[1]


def split_language(examples: Sequence[Example], lang: str, spec: TaskSpec, paths: Sequence[Path]) -> TaskSplits:
    """The rows of ``lang``: train on ``spec.train_sources``, evaluate on natural rows only."""
    if spec.languages is not None and lang not in spec.languages:
        raise TaskFileError(f"unknown language {lang!r} for task {spec.name!r} (has {list(spec.languages)})")
    # A row in none of the known languages ('en', 'deu') would be read by no job of any sweep.
    known = spec.languages or (*group_options("lang"), lang)
    splits: dict[str, list[Example]] = {split: [] for split in SPLITS}
    dropped = 0
    other_languages: Counter[str] = Counter()
    for example in examples:
        if example.lang != lang:
            if example.lang not in known:
                raise TaskFileError(
                    f"{example.origin}: unknown language {example.lang!r}; the known languages are "
                    f"{', '.join(known)} (a task in other languages lists its codes in cls_task.languages)"
                )
            other_languages[example.lang] += 1
            continue
        allowed = spec.train_sources if example.split == "train" else ("natural",)
        if example.source in allowed:
            splits[example.split].append(example)
        else:
            dropped += 1
    if dropped:
        log.info("%s/%s: %d translated val/test rows left out (evaluation uses natural data only)",
                 spec.name, lang, dropped)
    if other_languages:
        log.info("%s/%s: %d rows of other languages not used by this job (each job reads one language): %s",
                 spec.name, lang, other_languages.total(),
                 ", ".join(f"{code} {count}" for code, count in sorted(other_languages.items())))
    names = ", ".join(str(p) for p in paths)
    for split, rows in splits.items():
        if not rows:
            sources = "/".join(spec.train_sources) if split == "train" else "natural"
            raise TaskFileError(f"empty split: no {split!r} rows with lang={lang!r} and source={sources} in {names}")
    if spec.type == "binary" and len({ex.labels[0] for ex in splits["train"]}) < 2:
        raise TaskFileError(f"the 'train' split of lang={lang!r} has a single class in {names}")
    return TaskSplits(spec=spec, lang=lang, splits=splits)


def load_task(spec: TaskSpec, lang: str, files: Sequence[str | Path] | None = None,
              directory: str | Path | None = None) -> TaskSplits:
    """Resolve, read, validate and split the task files for one language.

    ``TaskSplits.spec`` holds the resolved label set: use it, not ``spec``, to size the head.
    """
    paths = resolve_task_files(files, directory)
    spec, examples = read_task(paths, spec)
    return split_language(examples, lang, spec, paths)
