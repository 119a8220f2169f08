"""Folder lists from the command line that may hold glob patterns (``report.sweep_dirs``, ``bundle.jobs``).

Hydra's override grammar rejects ``=`` in an unquoted value, so a folder named after overrides
(``.../lang=esp/seed=3``) is reached by a pattern instead (``.../lang*/seed*``); docs/statistics.md.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path


def expand_paths(entries: Iterable[str | Path], field: str) -> list[Path]:
    """Each entry as a path, a pattern replaced by its matches (sorted, ``**`` recursive), duplicates
    dropped; a plain path is kept whether it exists or not, a pattern matching nothing (a typo) fails."""
    paths: list[Path] = []
    for entry in entries:
        text = os.path.expanduser(str(entry))
        if not any(char in "*?[" for char in text):
            paths.append(Path(text))
            continue
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise FileNotFoundError(f"{field}: the pattern {text!r} matches no file or folder")
        paths.extend(Path(match) for match in matches)
    return list(dict.fromkeys(paths))
