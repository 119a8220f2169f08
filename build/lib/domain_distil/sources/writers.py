"""The prepared-data folder: corpus files, task files, completion markers and the manifest.

Layout (docs/formats.md, docs/data-sources.md)::

    <prepared_dir>/corpus/<lang>.txt       one document per line (what task=distill reads)
    <prepared_dir>/tasks/<task>.jsonl      labeled rows (what task=classify reads)
    <prepared_dir>/manifest.json           counts, bytes, tag counts, input hashes, seed
    <prepared_dir>/.state/<part>.json      one marker per finished part (resume skips it)
    <prepared_dir>/.state/parts/...        per-language task rows, merged when all are done

Every file is written through ``common.io.atomic_open``: a crash leaves the previous file (or no
file) and never a half-written one, and a part's marker is written only after its files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from domain_distil.common.hashing import hash_object
from domain_distil.common.io import atomic_open, read_json, write_json


def document_line(text: str) -> str:
    """One corpus line: newlines and runs of whitespace become single spaces (docs/formats.md)."""
    return " ".join(text.split())


def line_bytes(line: str) -> int:
    """Bytes the line takes in the file, newline included; budgets count exactly this."""
    return len(line.encode("utf-8")) + 1


class DocumentWriter:
    """Writes documents one per line and counts them; empty documents are skipped."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        self.documents = 0
        self.bytes = 0

    def write(self, text: str) -> int:
        line = document_line(text)
        if not line:
            return 0
        self._handle.write(line + "\n")
        self.documents += 1
        n = line_bytes(line)
        self.bytes += n
        return n


class PreparedDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.corpus_dir = self.root / "corpus"
        self.tasks_dir = self.root / "tasks"
        self.state_dir = self.root / ".state"

    # -- resume markers -------------------------------------------------------------------
    def marker_path(self, part: str) -> Path:
        return self.state_dir / f"{part}.json"

    def done(self, part: str) -> dict[str, Any] | None:
        """The record of a finished part, or None; a part whose outputs vanished is not done."""
        marker = self.marker_path(part)
        if not marker.exists():
            return None
        record = read_json(marker)
        if not all((self.root / rel).exists() for rel in record.get("outputs", [])):
            return None
        return record

    def mark_done(self, part: str, record: Mapping[str, Any]) -> None:
        write_json(self.marker_path(part), dict(record))

    # -- corpus ---------------------------------------------------------------------------
    def corpus_path(self, lang: str) -> Path:
        return self.corpus_dir / f"{lang}.txt"

    @contextmanager
    def corpus_writer(self, lang: str) -> Iterator[DocumentWriter]:
        with atomic_open(self.corpus_path(lang)) as handle:
            yield DocumentWriter(handle)

    # -- tasks ----------------------------------------------------------------------------
    def task_part_path(self, task: str, lang: str) -> Path:
        return self.state_dir / "parts" / f"{task}.{lang}.jsonl"

    def write_task_part(self, task: str, lang: str, rows: Iterable[Mapping[str, Any]]) -> int:
        n = 0
        with atomic_open(self.task_part_path(task, lang)) as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        return n

    def task_path(self, task: str) -> Path:
        return self.tasks_dir / f"{task}.jsonl"

    def assemble_task(self, task: str, langs: Iterable[str]) -> Path:
        """Concatenate the per-language parts, in the order given, into tasks/<task>.jsonl."""
        path = self.task_path(task)
        with atomic_open(path) as out:
            for lang in langs:
                with open(self.task_part_path(task, lang), encoding="utf-8") as part:
                    for line in part:
                        out.write(line)
        return path

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        path = self.root / "manifest.json"
        write_json(path, dict(manifest))
        return path


def input_fingerprint(path: Path, **settings: Any) -> str:
    """Identity of one language's input for resume markers: the file (path, size, mtime) plus
    every setting that shapes what is written from it. A change to either redoes that language."""
    stat = path.stat()
    return hash_object({"path": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns, **settings})
