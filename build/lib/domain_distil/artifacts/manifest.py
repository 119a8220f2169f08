"""Reading and writing ``manifest.json``, the record every artifact folder carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domain_distil.common.io import read_json, write_json

MANIFEST = "manifest.json"


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of ``folder``, or None when there is none or it cannot be parsed."""
    path = manifest_path(folder)
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename), so a reader never sees half a manifest."""
    path = manifest_path(folder)
    write_json(path, manifest)
    return path
