"""``task=list``: the cache's artifacts and the serving bundles under ``paths.log_dir``, with their key
facts (a student's ``key`` is what ``encoder=distilled encoder.key=<key>`` takes).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from domain_distil.artifacts.listing import ArtifactRow, list_artifacts


def run(cfg: DictConfig) -> list[ArtifactRow]:
    rows = list_artifacts(Path(cfg.paths.cache_dir), bundle_roots=[cfg.paths.log_dir])
    console = Console(width=200, soft_wrap=True)
    counts = Counter(row.kind for row in rows)
    console.print(f"[bold]{len(rows)} artifacts[/] in {cfg.paths.cache_dir}: "
                  + (", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"))
    for row in rows:
        console.print(f"{row.kind:9} {row.path}\n          {row.describe()}", highlight=False)
    if counts["student"]:
        console.print("Classify with a student: python run.py task=classify encoder=distilled encoder.key=<key "
                      "or a unique prefix>", highlight=False)
    return rows
