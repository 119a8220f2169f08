"""Reading, writing and comparing ``manifest.json``, the record every artifact folder carries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from domain_distil.common.io import MANIFEST, read_json, write_json


def read_manifest(folder: str | Path, name: str = MANIFEST) -> dict[str, Any] | None:
    """The manifest (or another JSON record, e.g. ``meta.json``) of ``folder``, or None when there is
    none or it cannot be parsed."""
    try:
        data = read_json(Path(folder) / name)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST  # written atomically: a reader never sees half a manifest
    write_json(path, manifest)
    return path


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}``, the dotted names a Hydra override uses."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def setting_differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """``field: theirs -> mine`` for every leaf setting that differs, sorted by dotted name.

    The one place that says which settings tell two records apart: a resume that finds another
    run's folder and a student lookup that finds other students both word it this way.
    """
    a, b = flatten(mine), flatten(theirs)
    missing = object()
    return [
        f"{key}: {b.get(key, '<unset>')!r} -> {a.get(key, '<unset>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]
