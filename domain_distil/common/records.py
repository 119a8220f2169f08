"""Row-per-record input files (JSONL, CSV, Parquet) with positions for error messages, and the
task-file row vocabulary (docs/formats.md) that the task-file reader (``classification``) and the
conversational source (``sources``) both check; it lives here because neither may import the other."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")
SOURCES = ("natural", "translated")


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
        import pyarrow as pa
        import pyarrow.parquet as pq

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
