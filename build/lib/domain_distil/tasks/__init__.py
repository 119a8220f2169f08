"""One module per ``task=<name>``; each exposes ``run(cfg: DictConfig)``."""

from __future__ import annotations

import pkgutil
from pathlib import Path


def available_tasks() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )
