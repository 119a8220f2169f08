"""``task=prepare corpus=<name>``: build ``corpus.source`` into a prepared corpus folder, task files and
``manifest.json``; resumable per language (docs/data-sources.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from domain_distil.artifacts.manifest import write_manifest
from domain_distil.common.provenance import git_commit
from domain_distil.sources.source import CorpusSource
from domain_distil.sources.writers import PreparedDir

log = logging.getLogger(__name__)


def _prune_dumps(source: DictConfig, languages: Any) -> DictConfig:
    """Keep only the dumps (a source's language -> input mapping) of the selected languages, so
    unset ones (``???``) for languages nobody asked for do not stop the run; a selected language
    without a dump is an error."""
    source = source.copy()
    if "dumps" not in source or languages is None:
        return source
    wanted = [str(x) for x in languages]
    with open_dict(source):
        for lang in list(source.dumps.keys()):
            if lang not in wanted:
                del source.dumps[lang]
    missing = [
        lang for lang in wanted if lang not in source.dumps or OmegaConf.is_missing(source.dumps, lang)
    ]
    if missing:
        raise SystemExit(
            f"corpus.languages asks for {missing} but no dump path is set; pass "
            + " ".join(f"corpus.source.dumps.{lang}=/path/to/dump" for lang in missing)
            + " or drop them from corpus.languages"
        )
    return source


def run(cfg: DictConfig) -> dict[str, Any]:
    corpus = cfg.corpus
    if "source" not in corpus or corpus.source is None:
        raise SystemExit(
            f"corpus={corpus.name} has nothing to prepare (no corpus.source); "
            "use a corpus whose conf/corpus/<name>.yaml has a source, e.g. corpus=stackexchange"
        )
    if cfg.seed is None:
        raise SystemExit("task=prepare samples data and needs a seed (seed=0 is fine)")
    prepared_dir = Path(corpus.prepared_dir)
    out = PreparedDir(prepared_dir)
    source = _prune_dumps(corpus.source, corpus.get("languages"))
    builder: CorpusSource = instantiate(source, _convert_="all")
    languages = OmegaConf.to_container(corpus.languages) if corpus.get("languages") is not None else None
    log.info("preparing %s into %s", corpus.name, prepared_dir)
    result = builder.build(out, languages=languages, seed=int(cfg.seed))
    manifest = {
        "corpus": corpus.name,
        "source": builder.kind,
        "seed": int(cfg.seed),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_commit(),
        "corpus_dir": out.relative(out.corpus_dir),
        "languages": result["languages"],
        "tasks": result.get("tasks", {}),
        "inputs": result.get("inputs"),
        "config": OmegaConf.to_container(source, resolve=True),
    }
    path = write_manifest(prepared_dir, manifest)
    for lang, rec in result["languages"].items():
        c = rec["corpus"]
        log.info("%s: %d documents, %d bytes -> %s", lang, c["documents"], c["bytes"], c["file"])
    log.info("manifest: %s", path)
    return manifest
