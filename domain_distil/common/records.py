"""Row-per-record input files (JSONL, CSV, Parquet) with positions for error messages, and the
task-file row check (docs/formats.md) that the task-file reader (``classification``) and the
conversational source (``sources``) both run; it lives here because neither may import the other."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from domain_distil.common.errors import UserInputError

SPLITS = ("train", "val", "test")
SOURCES = ("natural", "translated")


def counts_rows(path: Path) -> bool:
    """Whether :func:`iter_records` numbers ``path``'s records by row (Parquet has no lines), not by line."""
    return path.suffix.lower() == ".parquet"


def where(path: Path, number: int) -> str:
    """A record's place for error messages: ``file:line`` (as compilers write it), or ``file: row N``."""
    return f"{path}: row {number}" if counts_rows(path) else f"{path}:{number}"


def task_row(record: Mapping[str, Any], path: Path, number: int, error: type[Exception]) -> dict[str, Any]:
    """One task-file row (docs/formats.md) checked and normalised, the same for ``task=prepare`` and
    ``task=classify``: ``text``, ``lang``, ``split``, ``source`` (non-empty strings, the last two from
    SPLITS and SOURCES), ``label`` (a string) and/or ``labels`` (a list of strings; in a CSV cell
    ``|``-separated, parts stripped; de-duplicated in order), optional ``id``. Which of ``label`` and
    ``labels`` the task needs is the reader's to check; errors name :func:`where`."""
    at = where(path, number)
    for name in ("text", "lang", "split", "source"):
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise error(f"{at}: missing field {name!r}")
        if not isinstance(value, str):
            raise error(f"{at}: field {name!r} must be a string, got {value!r}")
    if record["split"] not in SPLITS:
        raise error(f"{at}: split {record['split']!r} is not one of {SPLITS}")
    if record["source"] not in SOURCES:
        raise error(f"{at}: source {record['source']!r} is not one of {SOURCES}")
    row: dict[str, Any] = {"text": record["text"]}
    label, labels = record.get("label"), record.get("labels")
    if label is None or label == "":
        if labels is None:
            raise error(f"{at}: missing field 'label' (single label) or 'labels' (multi-label)")
    elif not isinstance(label, str):
        raise error(f"{at}: 'label' must be a string, got {label!r}")
    else:
        row["label"] = label
    if labels is not None:
        if isinstance(labels, str) and path.suffix.lower() == ".csv":
            labels = [part.strip() for part in labels.split("|") if part.strip()]
        elif not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise error(f"{at}: 'labels' must be a list of strings, got {labels!r}")
        row["labels"] = list(dict.fromkeys(labels))
    row |= {name: record[name] for name in ("lang", "split", "source")}
    if record.get("id") not in (None, ""):
        row["id"] = str(record["id"])
    return row


def iter_records(
    path: Path, error: type[Exception] = ValueError, required_columns: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for a ``.jsonl``/``.json`` (blank lines skipped) or ``.csv`` file,
    ``(row number, row)`` for a ``.parquet`` file.

    CSV line numbers count the header as line 1 (a quoted cell may span lines: the number is the
    line the row ends on). Bad input raises ``error`` naming the file and line; ``required_columns``
    are checked against the CSV header before the first row (JSONL rows are checked by the caller).
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise error(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
                yield number, row
    elif suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            for name in required_columns:
                if name not in header:
                    raise error(f"{path}:1: missing column {name!r} in the header (have {header})")
            try:
                for row in reader:
                    if None in row:  # DictReader files surplus cells under the key None
                        raise error(f"{path}:{reader.line_num}: more cells than the header has columns")
                    yield reader.line_num, row
            except csv.Error as exc:  # e.g. a NUL byte or an unterminated quote at end of file
                raise error(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    elif suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise UserInputError(f"{path}: reading .parquet needs pyarrow (pip install pyarrow)") from exc

        number = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        except (OSError, pa.ArrowException) as exc:
            raise error(f"{path}: unreadable Parquet after row {number} ({exc})") from None
    else:
        raise error(f"{path}: unsupported file type {path.suffix!r} (expected .jsonl, .csv or .parquet)")
