"""The selection stage: pick the pool documents nearest a task's training texts up to a token budget,
into an ordinary ``<lang>.txt`` corpus folder (``corpus.dir=<folder>``). Scores: ``tokens`` (Moore & Lewis),
``embedding`` and ``static`` (kNN similarity, Gururangan et al. 2020), ``random`` (the equal-budget
control); what each computes and the budget rule: docs/corpus-selection.md.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.analysis.corpus_fit import batched, nearest_similarities, token_ids
from domain_distil.classification.taskfile import TaskSpec, load_examples, resolve_task_files
from domain_distil.common.errors import ConfigError, UserInputError
from domain_distil.common.hashing import hash_file, hash_object, short
from domain_distil.common.io import atomic_open, read_json, write_json
from domain_distil.common.locking import build_entry
from domain_distil.common.progress import progress
from domain_distil.corpus.reader import read_documents
from domain_distil.encoders import embed
from domain_distil.sources.sampling import uniform_key

log = logging.getLogger(__name__)

SELECTED_DIR = "corpus_selected"
RECORD = "selection.json"
LINES = "selected_lines.json"
VERSION = 1


class SelectionError(UserInputError):
    """The selection cannot be made as configured (budget, languages, empty task)."""


@dataclass
class PoolTokens:
    """One language's pool, tokenised once: every document's ids, flat, with offsets."""

    ids: np.ndarray  # int32, all documents' tokens back to back (no special tokens)
    offsets: np.ndarray  # int64, len = documents + 1
    origins: list[str]  # "file:line" of each document

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class Scorer(Protocol):
    """Scores one language's pool documents against its task texts; higher = nearer the task."""

    method: str

    def identity(self) -> dict[str, Any]: ...

    def score(self, lang: str, task_texts: Sequence[str], pool: PoolTokens, pool_files: Sequence[Path],
              text_field: str) -> np.ndarray: ...


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of everything that decides the ids (a fast tokenizer's full JSON, else its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return hash_object(backend.to_str())
    return hash_object(sorted(tokenizer.get_vocab().items()))


def _pool_texts(files: Sequence[Path], text_field: str, origins: list[str] | None = None) -> Iterator[str]:
    """Every non-empty document of ``files`` in order; appends its ``file:line`` to ``origins``."""
    for path in files:
        for text, _, line in read_documents(path, text_field):
            if text:
                if origins is not None:
                    origins.append(f"{path}:{line}")
                yield text


def tokenise_pool(tokenizer: PreTrainedTokenizerBase, files: Sequence[Path], text_field: str, lang: str) -> PoolTokens:
    """Tokenise every non-empty document of ``files`` once, keeping ids flat (4 bytes a token)."""
    chunks: list[np.ndarray] = []
    lengths: list[int] = []
    origins: list[str] = []
    tokens = 0
    with progress(f"tokenise pool {lang}") as report:
        for ids in token_ids(tokenizer, _pool_texts(files, text_field, origins)):
            lengths.extend(len(row) for row in ids)
            chunks.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32))
            tokens += len(chunks[-1])
            report.update(tokens=tokens, documents=len(lengths))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return PoolTokens(ids=flat, offsets=offsets, origins=origins)


@dataclass
class TokenScorer:
    """Moore–Lewis cross-entropy difference with add-``alpha`` unigram models of task and pool."""

    tokenizer: PreTrainedTokenizerBase
    alpha: float = 0.1
    method: str = "tokens"

    def identity(self) -> dict[str, Any]:
        return {"method": self.method, "tokenizer": tokenizer_identity(self.tokenizer), "alpha": self.alpha}

    def score(self, lang: str, task_texts: Sequence[str], pool: PoolTokens, pool_files: Sequence[Path],
              text_field: str) -> np.ndarray:
        vocab = len(self.tokenizer)
        task_counts = np.zeros(vocab, dtype=np.float64)
        for ids in token_ids(self.tokenizer, task_texts):
            task_counts += np.bincount(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64), minlength=vocab)
        pool_counts = np.bincount(pool.ids, minlength=vocab).astype(np.float64)
        log_task = np.log((task_counts + self.alpha) / (task_counts.sum() + self.alpha * vocab))
        log_pool = np.log((pool_counts + self.alpha) / (pool_counts.sum() + self.alpha * vocab))
        per_token = (log_task - log_pool)[pool.ids]
        lengths = pool.lengths
        sums = np.zeros(len(lengths))
        nonempty = lengths > 0
        # reduceat over the starts of non-empty documents (an empty one would repeat its neighbour)
        sums[nonempty] = np.add.reduceat(per_token, pool.offsets[:-1][nonempty]) if per_token.size else 0.0
        return np.where(nonempty, sums / np.maximum(lengths, 1), -np.inf)


@dataclass
class EmbeddingScorer:
    """Mean cosine similarity of a document's teacher vector to its ``k`` nearest task texts."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_identity: str
    k: int = 5
    max_length: int = 128
    batch_size: int = 64
    method: str = "embedding"

    def identity(self) -> dict[str, Any]:
        return {"method": self.method, "encoder": self.model_identity, "k": self.k, "max_length": self.max_length}

    def vectors(self, texts: Sequence[str], what: str) -> torch.Tensor:
        parts = []
        with progress(f"embed {what}") as report:
            for done, batch in enumerate(batched(texts, 1024), start=1):
                parts.append(embed(self.model, self.tokenizer, batch, self.max_length, self.batch_size))
                report.update(fraction=min(1.0, done * 1024 / max(1, len(texts))), documents=done * 1024)
        return torch.cat(parts) if parts else torch.zeros(0, self.model.config.hidden_size)

    def score(self, lang: str, task_texts: Sequence[str], pool: PoolTokens, pool_files: Sequence[Path],
              text_field: str) -> np.ndarray:
        task = self.vectors(list(task_texts), f"task texts {lang}")
        documents = self.vectors(list(_pool_texts(pool_files, text_field)), f"pool {lang}")
        # rows: documents, columns: their k nearest task texts
        return nearest_similarities(documents, task, self.k).mean(dim=1).double().numpy()


@dataclass
class StaticEmbeddingScorer:
    """Mean cosine similarity of a document's mean input-token vector to its ``k`` nearest task texts.

    ``table`` is the teacher's word-embedding matrix (vocabulary x hidden), indexed by the pool's
    teacher-tokenizer ids: no second tokenisation and no encoder pass.
    """

    table: torch.Tensor
    tokenizer: PreTrainedTokenizerBase
    model_identity: str
    k: int = 5
    documents_per_chunk: int = 65_536  # bounds the (documents x task texts) similarity block
    method: str = "static"

    def __post_init__(self) -> None:
        if self.table.ndim != 2 or self.table.shape[0] < len(self.tokenizer):
            raise SelectionError(
                f"select_corpus.method=static: the teacher's embedding table has shape {tuple(self.table.shape)}, "
                f"expected (>= {len(self.tokenizer)} rows = the tokenizer's size, hidden)")
        self.table = self.table.detach().float()

    def identity(self) -> dict[str, Any]:
        return {"method": self.method, "encoder": self.model_identity, "k": self.k}

    def _mean_vectors(self, ids: np.ndarray, offsets: np.ndarray) -> torch.Tensor:
        """One mean vector per ``offsets`` bag of ``ids`` (an empty bag gives zeros)."""
        return torch.nn.functional.embedding_bag(torch.from_numpy(ids.astype(np.int64)), self.table,
                                                 torch.from_numpy(offsets[:-1].astype(np.int64)), mode="mean")

    def score(self, lang: str, task_texts: Sequence[str], pool: PoolTokens, pool_files: Sequence[Path],
              text_field: str) -> np.ndarray:
        task_rows = [row for ids in token_ids(self.tokenizer, task_texts) for row in ids if row]
        if not task_rows:
            raise SelectionError(f"select_corpus: no {lang} task text has a token for method=static")
        task_offsets = np.zeros(len(task_rows) + 1, dtype=np.int64)
        np.cumsum([len(row) for row in task_rows], out=task_offsets[1:])
        task = self._mean_vectors(np.fromiter(itertools.chain.from_iterable(task_rows), dtype=np.int64), task_offsets)
        scores = np.empty(len(pool.origins))
        with progress(f"static vectors {lang}") as report:
            for start in range(0, len(scores), self.documents_per_chunk):
                stop = min(start + self.documents_per_chunk, len(scores))
                offsets = pool.offsets[start : stop + 1]
                vectors = self._mean_vectors(pool.ids[offsets[0] : offsets[-1]], offsets - offsets[0])
                scores[start:stop] = nearest_similarities(vectors, task, self.k).mean(dim=1).double().numpy()
                report.update(fraction=stop / len(scores), documents=stop)
        return np.where(pool.lengths > 0, scores, -np.inf)


@dataclass
class RandomScorer:
    """A seeded uniform key per document: the same-budget random sample of the pool."""

    seed: int = 0
    method: str = "random"

    def identity(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed}

    def score(self, lang: str, task_texts: Sequence[str], pool: PoolTokens, pool_files: Sequence[Path],
              text_field: str) -> np.ndarray:
        return np.array([uniform_key(self.seed, f"{lang}:{i}") for i in range(len(pool.origins))])


def choose(scores: np.ndarray, lengths: np.ndarray, budget_tokens: int) -> np.ndarray:
    """Indices (ascending) of the best-scored documents whose tokens first reach ``budget_tokens``.

    Deterministic: equal scores keep pool order (a stable sort on the negated scores).
    """
    order = np.argsort(-scores, kind="stable")
    cumulative = np.cumsum(lengths[order])
    count = int(np.searchsorted(cumulative, budget_tokens, side="left")) + 1
    return np.sort(order[: min(count, len(order))])


def select_corpus(
    pool_files: Mapping[str, Sequence[Path]],
    task_texts: Mapping[str, Sequence[str]],
    budget_tokens: int,
    scorer: Scorer,
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | Path,
    *,
    pool_name: str = "pool",
    task_name: str = "task",
    text_field: str = "text",
) -> Path:
    """Write (or reuse) ``<cache>/corpus_selected/<hash>/`` for every language of ``task_texts``.

    ``budget_tokens`` counts ``tokenizer`` tokens without special tokens, per language.
    """
    missing = sorted(set(task_texts) - set(pool_files))
    if missing:
        raise SelectionError(f"select_corpus: the pool has no files for {missing} (has {sorted(pool_files)})")
    empty = sorted(lang for lang, texts in task_texts.items() if not texts)
    if empty:
        raise SelectionError(f"select_corpus: no task training texts for {empty}; check cls_task files and languages")
    if budget_tokens < 1:
        raise SelectionError(f"select_corpus.budget_tokens must be >= 1, got {budget_tokens}")
    pool_record = {lang: [{"path": str(Path(p).resolve()), "sha256": hash_file(p)} for p in pool_files[lang]]
                   for lang in sorted(task_texts)}
    key = hash_object({
        "version": VERSION, "pool": {lang: [f["sha256"] for f in files] for lang, files in pool_record.items()},
        "task": hash_object({lang: list(task_texts[lang]) for lang in sorted(task_texts)}),
        "budget_tokens": int(budget_tokens), "scorer": scorer.identity(), "tokenizer": tokenizer_identity(tokenizer),
        "text_field": text_field,
    })
    out = Path(cache_dir) / SELECTED_DIR / short(key, 16)

    def build(tmp: Path) -> None:
        languages: dict[str, Any] = {}
        lines: dict[str, list[str]] = {}
        for lang in sorted(task_texts):
            files = [Path(p) for p in pool_files[lang]]
            pool = tokenise_pool(tokenizer, files, text_field, lang)
            if int(pool.lengths.sum()) <= budget_tokens:
                raise SelectionError(
                    f"select_corpus: the {lang} pool has {int(pool.lengths.sum())} tokens, not more than the budget "
                    f"of {budget_tokens}; lower select_corpus.budget_tokens or give a larger pool"
                )
            scores = scorer.score(lang, task_texts[lang], pool, files, text_field)
            chosen = choose(scores, pool.lengths, budget_tokens)
            _write_selected(tmp / f"{lang}.txt", files, text_field, chosen)
            finite = scores[np.isfinite(scores)]
            languages[lang] = {
                "documents_pool": len(scores), "tokens_pool": int(pool.lengths.sum()),
                "documents_selected": len(chosen), "tokens_selected": int(pool.lengths[chosen].sum()),
                "mean_score_pool": float(finite.mean()), "mean_score_selected": float(scores[chosen].mean()),
                "lowest_selected_score": float(scores[chosen].min()), "extra": {},
            }
            lines[lang] = [pool.origins[i] for i in chosen]
            log.info("selected %s: %d of %d documents, %d tokens (budget %d) by %s", lang, len(chosen),
                     len(scores), languages[lang]["tokens_selected"], budget_tokens, scorer.method)
        write_json(tmp / LINES, lines)
        write_json(tmp / RECORD, {
            "kind": "corpus_selection", "version": VERSION, "key": out.name, "method": scorer.method,
            "scorer": scorer.identity(), "budget_tokens": int(budget_tokens), "budget_unit": "tokens without specials",
            "pool": {"name": pool_name, "files": pool_record}, "task": {"name": task_name,
            "texts": {lang: len(texts) for lang, texts in task_texts.items()}}, "languages": languages,
            "selected_lines": LINES,
        })  # written last: it marks the entry complete

    return build_entry(out, build, is_complete=lambda path: (path / RECORD).is_file())


def _write_selected(target: Path, files: Sequence[Path], text_field: str, chosen: np.ndarray) -> None:
    """Write the chosen documents (indices into the pool's non-empty documents) in pool order."""
    wanted = set(chosen.tolist())
    with atomic_open(target) as handle:  # stops reading after the last chosen document
        for index, text in enumerate(itertools.islice(_pool_texts(files, text_field), max(wanted, default=-1) + 1)):
            if index in wanted:
                handle.write(" ".join(text.split()) + "\n")


def read_selection(folder: str | Path) -> dict[str, Any] | None:
    """The ``selection.json`` of a selected corpus folder, or None for any other folder."""
    path = Path(folder) / RECORD
    return read_json(path) if path.is_file() else None


def task_texts(cls_task: DictConfig, split: str, languages: Sequence[str] | None) -> dict[str, list[str]]:
    """The ``split`` texts of the task per language (all sources), read and validated once: what
    ``task=select_corpus`` selects for and ``task=corpus_fit`` measures candidates against."""
    spec = TaskSpec.from_config(cls_task)
    examples = load_examples(resolve_task_files(cls_task.get("files"), cls_task.get("dir")), spec)
    wanted = set(languages) if languages else None
    texts: dict[str, list[str]] = {}
    for example in examples:
        if example.split == split and (wanted is None or example.lang in wanted):
            texts.setdefault(example.lang, []).append(example.text)
    if not texts:
        raise ConfigError(f"cls_task {cls_task.name}: no {split!r} rows for languages {languages or 'any'}; "
                          "check cls_task.files/dir, the languages, or corpus_fit.split")
    return texts
