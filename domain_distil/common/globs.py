"""Folder lists from the command line that may hold glob patterns (``report.sweep_dirs``, ``bundle.jobs``).

Hydra's override grammar rejects ``=`` in an unquoted value, so a folder named after overrides
(``.../lang=esp/seed=3``) is reached by a pattern instead (``.../lang*/seed*``); docs/statistics.md.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

_GLOB_CHARS = frozenset("*?[")


def is_pattern(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def expand_paths(entries: Iterable[str | Path], field: str) -> list[Path]:
    """Each entry as a path, patterns replaced by their matches (sorted, ``**`` recursive), duplicates dropped.

    A plain path is returned whether it exists or not (the caller says what it expected there); a
    pattern that matches nothing is an error naming ``field``, since it is almost always a typo.
    """
    paths: list[Path] = []
    for entry in entries:
        text = os.path.expanduser(str(entry))
        if not is_pattern(text):
            paths.append(Path(text))
            continue
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise FileNotFoundError(f"{field}: the pattern {text!r} matches no file or folder")
        paths.extend(Path(match) for match in matches)
    return list(dict.fromkeys(paths))
