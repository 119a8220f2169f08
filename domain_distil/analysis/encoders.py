"""Encoder lists for the analyses (homonyms, speed): which encoders a config names, by id.

An entry is ``{id: <display name>, name_or_path: <hub name or local folder>}``: anything
``domain_distil.encoders.load_encoder`` loads, including a distilled student's export folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EncoderSpec:
    id: str
    name_or_path: str


def parse_encoders(
    entries: Iterable[Mapping[str, Any]], where: str, resolve_teacher: Callable[[], str] | None = None
) -> list[EncoderSpec]:
    """Validate a config list of encoders; ``where`` names the config key in error messages.

    An entry ``{id: ..., teacher: true}`` stands for the configured teacher; ``resolve_teacher``
    turns it into a path (teachers with a ``builder`` have no name_or_path until they are built).
    """
    specs = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping) and entry.get("teacher") and not entry.get("name_or_path") and resolve_teacher:
            entry = {**entry, "name_or_path": resolve_teacher()}
        if not isinstance(entry, Mapping) or not entry.get("id") or not entry.get("name_or_path"):
            raise ValueError(
                f"{where}[{i}]: expected {{id: <name>, name_or_path: <hub name or folder>}} or "
                f"{{id: <name>, teacher: true}}, got {entry!r}")
        specs.append(EncoderSpec(str(entry["id"]), str(entry["name_or_path"])))
    ids = [s.id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{where}: encoder ids must be unique, repeated: {duplicates}")
    if not specs:
        raise ValueError(f"{where}: the list of encoders is empty")
    return specs


def teacher_resolver(cfg: Any) -> Callable[[], str]:
    """``{teacher: true}`` entries -> the configured teacher's folder (built on first use)."""

    def resolve() -> str:  # imported here: only a config with a teacher entry needs the modeling stack
        from domain_distil.modeling.teachers import resolve_teacher_path

        return resolve_teacher_path(cfg.teacher, cfg.paths.cache_dir)

    return resolve
