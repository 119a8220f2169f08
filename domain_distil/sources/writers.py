"""The prepared-data folder: corpus files, task files, completion markers and the manifest.

Layout, resume markers and failure handling: docs/data-sources.md. Every file is written through
``common.io.atomic_open``: a crash leaves the previous file (or no file) and never a half-written
one, and a part's marker is written only after its files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any

from domain_distil.common.hashing import hash_object
from domain_distil.common.io import atomic_open, read_json, write_json

log = logging.getLogger(__name__)


def document_line(text: str) -> str:
    """One corpus line: newlines and runs of whitespace become single spaces (docs/formats.md)."""
    return " ".join(text.split())


def line_bytes(line: str) -> int:
    """Bytes the line takes in the file, newline included; budgets count exactly this."""
    return len(line.encode("utf-8")) + 1


class DocumentWriter:
    """Writes documents one per line and counts them; empty documents are skipped."""

    def __init__(self, handle: IO[str], file: str) -> None:
        self._handle, self.file = handle, file  # file: relative to the prepared folder
        self.documents = 0
        self.bytes = 0

    def write(self, text: str) -> None:
        line = document_line(text)
        if line:
            self._handle.write(line + "\n")
            self.documents += 1
            self.bytes += line_bytes(line)

    def record(self) -> dict[str, Any]:
        """What the manifest says about the written file."""
        return {"file": self.file, "documents": self.documents, "bytes": self.bytes}


class PreparedDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.corpus_dir = self.root / "corpus"
        self.tasks_dir = self.root / "tasks"
        self.state_dir = self.root / ".state"

    def resumable(self, part: str, fingerprint: str, build: Callable[..., dict[str, Any]],
                  *args: Any) -> dict[str, Any]:
        """The record of ``part``: its marker's, when the fingerprint matches and the outputs are all
        still there, else what ``build(*args)`` returns, marked done only after it wrote the part's files."""
        marker = self.state_dir / f"{part}.json"
        if marker.exists():
            record = read_json(marker)
            outputs_exist = all((self.root / rel).exists() for rel in record.get("outputs", []))
            if record.get("fingerprint") == fingerprint and outputs_exist:
                log.info("%s: already prepared, skipping (delete %s to redo)", part, marker)
                return record
        record = build(*args) | {"fingerprint": fingerprint}
        write_json(marker, record)
        return record

    def corpus_path(self, lang: str) -> Path:
        return self.corpus_dir / f"{lang}.txt"

    @contextmanager
    def document_writer(self, path: Path) -> Iterator[DocumentWriter]:
        with atomic_open(path) as handle:
            yield DocumentWriter(handle, self.relative(path))

    def corpus_writer(self, lang: str) -> AbstractContextManager[DocumentWriter]:
        return self.document_writer(self.corpus_path(lang))

    def task_part_path(self, task: str, lang: str) -> Path:
        return self.state_dir / "parts" / f"{task}.{lang}.jsonl"

    def write_task_part(self, task: str, lang: str, rows: Iterable[Mapping[str, Any]]) -> None:
        with atomic_open(self.task_part_path(task, lang)) as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def task_path(self, task: str) -> Path:
        return self.tasks_dir / f"{task}.jsonl"

    def assemble_task(self, task: str, langs: Iterable[str]) -> Path:
        """Concatenate the per-language parts, in the order given, into tasks/<task>.jsonl."""
        path = self.task_path(task)
        with atomic_open(path) as out:
            for lang in langs:
                with open(self.task_part_path(task, lang), encoding="utf-8") as part:
                    out.writelines(part)
        return path

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))


def input_fingerprint(path: Path, **settings: Any) -> str:
    """Identity of one language's input for resume markers: the file (path, size, mtime) plus
    every setting that shapes what is written from it. A change to either redoes that language."""
    stat = path.stat()
    return hash_object({"path": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns, **settings})
