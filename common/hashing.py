"""Content hashes that name cache folders, so every cached artefact is keyed by what made it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def hash_file(path: str | Path, digest: hashlib._Hash | None = None) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (constant memory)."""
    h = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_files(paths: Iterable[str | Path]) -> str:
    """One hash over several files: their names (not folders) and their bytes, in the order given."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).name.encode())
        hash_file(path, h)
    return h.hexdigest()


def hash_dir(path: str | Path, pattern: str = "*") -> str:
    """Hash of every file under ``path`` matching ``pattern``, by relative name and content."""
    root = Path(path)
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob(pattern) if p.is_file()):
        h.update(str(file.relative_to(root)).encode())
        hash_file(file, h)
    return h.hexdigest()


def hash_object(obj: Any) -> str:
    """Hash of a JSON-serialisable object (dict keys sorted, so order never matters)."""
    payload = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(payload).hexdigest()


def short(digest: str, length: int = 12) -> str:
    return digest[:length]
