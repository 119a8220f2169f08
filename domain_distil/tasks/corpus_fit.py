"""``task=corpus_fit``: rank candidate corpora by how well they fit a task, before distilling on any
(docs/corpus-selection.md); the statistics are in ``analysis/corpus_fit.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from domain_distil.analysis.corpus_fit import FitRow
from domain_distil.analysis.corpus_fit_report import (
    Candidate,
    FitSettings,
    fit_report,
    markdown_table,
    write_report,
)
from domain_distil.common.errors import ConfigError
from domain_distil.common.loggers import build_loggers, finish_wandb, sweep_group
from domain_distil.corpus.reader import discover_files
from domain_distil.modeling.teachers import load_teacher_tokenizer, resolve_teacher_path
from domain_distil.stages.select_corpus import task_texts

log = logging.getLogger(__name__)


def _candidate(candidate_id: str, entry: Any, languages: Sequence[str] | None) -> Candidate:
    if isinstance(entry, str):
        path = Path(entry)
        if path.is_file():  # one file: the language is its name (eng.txt) or the only language asked for
            lang = path.name.split(".")[0] if not languages or len(languages) != 1 else languages[0]
            return Candidate(candidate_id, {lang: [path]})
        entry = {"dir": entry}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"corpus_fit.candidates.{candidate_id}: expected a folder, a file or {{dir, files}}, "
                          f"got {entry!r}")
    files = discover_files(entry.get("dir"), entry.get("files"), None)
    return Candidate(candidate_id, files)


def candidates_from_config(cfg: DictConfig) -> list[Candidate]:
    """``corpus_fit.candidates`` ({id: path} or [{id, dir, files}]); empty = the ``corpus`` group."""
    raw = OmegaConf.to_container(cfg.corpus_fit.candidates, resolve=True) or {}
    languages = cfg.corpus_fit.get("languages")
    if isinstance(raw, list):
        entries = {}
        for position, entry in enumerate(raw):
            if not isinstance(entry, Mapping) or "id" not in entry:
                raise ConfigError(f"corpus_fit.candidates[{position}]: each entry needs an `id` (and dir or files)")
            entries[str(entry["id"])] = entry
        raw = entries
    if not raw:
        corpus = OmegaConf.to_container(cfg.corpus, resolve=True)
        raw = {str(corpus.get("name") or "corpus"): {"dir": corpus.get("dir"), "files": corpus.get("files")}}
    return [_candidate(str(cid), entry, languages) for cid, entry in raw.items()]


def fit_settings(node: DictConfig) -> FitSettings:
    max_bytes = node.get("max_corpus_bytes")
    return FitSettings(
        sample_documents=int(node.sample_documents), sample_task_texts=int(node.sample_task_texts),
        max_corpus_bytes=None if max_bytes is None else int(max_bytes), max_length=int(node.max_length),
        batch_size=int(node.batch_size), k=int(node.k), seed=int(node.seed), text_field=str(node.text_field),
    )


def run(cfg: DictConfig) -> list[FitRow]:
    node = cfg.corpus_fit
    candidates = candidates_from_config(cfg)  # bad folders fail before the teacher loads
    languages = node.get("languages") or cfg.cls_task.get("languages")
    texts = {str(cfg.cls_task.name): task_texts(cfg.cls_task, str(node.split), languages)}
    teacher_path = resolve_teacher_path(cfg.teacher, cfg.paths.cache_dir)
    tokenizer = load_teacher_tokenizer(cfg.teacher, teacher_path)
    encoder = None
    if bool(node.embedding):
        from domain_distil.encoders import load_encoder

        encoder = load_encoder(teacher_path, local_files_only=bool(cfg.teacher.get("local_files_only", False)))
    rows = fit_report(candidates, texts, tokenizer, fit_settings(node), encoder)
    written = write_report(rows, Path(cfg.paths.output_dir), str(node.rank_by), plot=bool(node.plot))
    print(markdown_table(rows, str(node.rank_by)))
    print(f"Written: {', '.join(str(p) for p in written.values())}")
    _log_table(cfg, rows)
    return rows


def _log_table(cfg: DictConfig, rows: Sequence[FitRow]) -> None:
    """The ranked rows as a table in every logger that takes tables (W&B); never fails the task."""
    loggers = build_loggers(cfg.get("logger"), name=f"corpus_fit-{cfg.cls_task.name}",
                            group=sweep_group("corpus_fit", cfg.paths.output_dir),
                            tags=["corpus_fit", str(cfg.cls_task.name)], job_type="corpus_fit")
    records = [row.as_dict() for row in rows]
    columns = list(dict.fromkeys(key for record in records for key in record))
    failed = True
    try:
        for logger in loggers:
            if hasattr(logger, "log_table"):
                logger.log_table(key="corpus_fit", columns=columns,
                                 data=[[record.get(c) for c in columns] for record in records])
        failed = False
    finally:
        finish_wandb(failed)
