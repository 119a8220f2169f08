"""Content hashes that name cache folders, so every cached artefact is keyed by what made it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from domain_distil.common.io import atomic_open

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


def stat_key(root: Path) -> str:
    """Cheap fingerprint of a folder (relative names, sizes, mtimes) to memoise its content hash."""
    entries = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = file.stat()
        entries.append((str(file.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return hash_object({"root": str(root.resolve()), "files": entries})


def memoised_model_hash(root: str | Path, cache_dir: str | Path | None) -> str:
    """``hash_dir`` of a model folder (teacher, student, encoder), remembered under
    ``<cache_dir>/encoder_hashes`` by the folder's names, sizes and mtimes, so a 700 MB model is
    read once, not by every job of a sweep."""
    root = Path(root)
    memo = Path(cache_dir) / "encoder_hashes" / f"{stat_key(root)}.txt" if cache_dir else None
    if memo is not None and memo.is_file():
        return memo.read_text().strip()
    digest = hash_dir(root)
    if memo is not None:
        with atomic_open(memo) as handle:
            handle.write(digest)
    return digest
