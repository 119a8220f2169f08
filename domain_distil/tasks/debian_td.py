"""experiment=debian_td: the demo's protocol (``stages/protocol.py``) on the Debian benchmark that
``task=prepare corpus=debian`` wrote, the fortune-file student in DistilmBERT's role (docs/debian.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from domain_distil.common.errors import ConfigError
from domain_distil.common.io import MANIFEST
from domain_distil.stages.protocol import DOMAIN, GENERAL, run_protocol

log = logging.getLogger(__name__)


def prepared_corpora(prepared_dir: Path, task: str) -> tuple[Path, Path]:
    """(in-domain, general) corpus folders of a prepared Debian benchmark; a clear error before any
    long work when ``task=prepare corpus=debian`` has not run (or ran without the task)."""
    needed = [prepared_dir / MANIFEST, prepared_dir / "tasks" / f"{task}.jsonl",
              prepared_dir / "corpus", prepared_dir / "general"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ConfigError(
            f"demo.data.prepared_dir={prepared_dir} lacks {missing}; run `python run.py task=prepare corpus=debian` "
            "first (same paths.data_dir), or point demo.data.prepared_dir at its output"
        )
    return prepared_dir / "corpus", prepared_dir / "general"


def run(cfg: DictConfig) -> dict[str, Any]:
    data_dir = Path(cfg.demo.data.prepared_dir)
    in_domain, general = prepared_corpora(data_dir, str(cfg.demo.tasks[0]))
    return run_protocol(cfg, data_dir, {GENERAL: general, DOMAIN: in_domain}, name="debian_td", with_speed=False)
