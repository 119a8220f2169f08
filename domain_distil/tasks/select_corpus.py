"""``task=select_corpus``: keep the pool documents (the ``corpus`` group) nearest the task's texts, up to
a token budget, as a corpus folder for ``task=distill`` (docs/corpus-selection.md).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from domain_distil.common.errors import ConfigError
from domain_distil.corpus.reader import discover_files
from domain_distil.modeling.teachers import load_teacher_tokenizer, resolve_teacher_path
from domain_distil.stages.select_corpus import (
    EmbeddingScorer,
    RandomScorer,
    Scorer,
    StaticEmbeddingScorer,
    TokenScorer,
    select_corpus,
    task_texts,
)

METHODS = ("tokens", "embedding", "static", "random")


def scorer_from_config(node: DictConfig, teacher_path: str, tokenizer, cache_dir: str, local_only: bool) -> Scorer:
    method = str(node.method)
    if method == "tokens":
        return TokenScorer(tokenizer, alpha=float(node.alpha))
    if method == "random":
        return RandomScorer(seed=int(node.seed))
    if method in ("embedding", "static"):
        from domain_distil.encoders import encoder_hash, load_encoder

        model, encoder_tokenizer = load_encoder(teacher_path, local_files_only=local_only)
        if method == "static":
            return StaticEmbeddingScorer(model.get_input_embeddings().weight, tokenizer,
                                         encoder_hash(teacher_path, cache_dir=cache_dir), k=int(node.k))
        return EmbeddingScorer(model, encoder_tokenizer, encoder_hash(teacher_path, cache_dir=cache_dir),
                               k=int(node.k), max_length=int(node.max_length), batch_size=int(node.batch_size))
    raise ConfigError(f"select_corpus.method must be one of {METHODS}, got {method!r}")


def run(cfg: DictConfig) -> str:
    node = cfg.select_corpus
    if str(node.method) not in METHODS:  # before anything is read or loaded
        raise ConfigError(f"select_corpus.method must be one of {METHODS}, got {node.method!r}")
    pool = discover_files(cfg.corpus.get("dir"), cfg.corpus.get("files"), None)
    languages = node.get("languages") or [lang for lang in (cfg.cls_task.get("languages") or pool) if lang in pool]
    texts = task_texts(cfg.cls_task, str(node.split), languages)
    teacher_path = resolve_teacher_path(cfg.teacher, cfg.paths.cache_dir)
    tokenizer = load_teacher_tokenizer(cfg.teacher, teacher_path)
    scorer = scorer_from_config(node, teacher_path, tokenizer, str(cfg.paths.cache_dir),
                                bool(cfg.teacher.get("local_files_only", False)))
    folder = select_corpus(
        {lang: pool[lang] for lang in texts}, texts, int(node.budget_tokens), scorer, tokenizer,
        Path(cfg.paths.cache_dir), pool_name=str(cfg.corpus.get("dir") or cfg.corpus.get("name")),
        task_name=str(cfg.cls_task.name), text_field=str(cfg.corpus.get("text_field", "text")),
    )
    print(f"Selected corpus: {folder}")
    return str(folder)
