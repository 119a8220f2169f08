"""experiment=debian_td: the demo's protocol on the real Debian benchmark (docs/debian.md).

Reads what ``task=prepare corpus=debian`` wrote (``corpus.prepared_dir``), then runs the demo's
protocol (``stages/protocol.py``; this experiment composes its groups under ``demo.*`` in the same
shape):

1. two students of the teacher, one recipe, ``demo.corpus.budget_tokens`` teacher tokens per
   language each: in-domain (``corpus/``: descriptions of the packages outside the task) and
   general (``general/``: fortune files);
2. frozen classifiers on the teacher and both students for ``debian_tags``, seeds x languages;
3. Table 8 with the general student in DistilmBERT's role and the teacher in mBERT's.

Under ``-m`` each job runs step 2 for its own seed and language, like the demo.
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
