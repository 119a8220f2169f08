"""Vocabulary trimming (``student.vocab=trim``): keep the tokens the domain uses, slice the rows.

Most of a multilingual encoder is its vocabulary (me5-small: 96 M of its 118 M parameters are the
250k x 384 embedding table). The tokenizer side is ``modeling/tokenizer_trim.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import hash_object
from domain_distil.common.records import iter_records
from domain_distil.corpus.reader import iter_documents
from domain_distil.modeling.mlm import mlm_head_parts

VOCAB_MODES = ("full", "trim")
# Tensors with one row per vocabulary id in the MLM models built here (BERT, DistilBERT, RoBERTa
# family): the word embeddings, the tied decoder weight, and the decoder bias (two names, one tensor).
_VOCAB_ROW_SUFFIXES = ("word_embeddings.weight", "decoder.weight", "decoder.bias", "predictions.bias",
                       "lm_head.bias", "vocab_projector.weight", "vocab_projector.bias")


@dataclass(frozen=True)
class VocabTrimSettings:
    """``student.vocab``, ``student.vocab_min_count``, ``student.vocab_extra_texts`` (conf/student)."""

    mode: str = "full"
    min_count: int = 1
    extra_texts: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.mode == "trim"

    @classmethod
    def from_config(cls, student: Mapping[str, Any]) -> VocabTrimSettings:
        """The settings of a ``student`` config group, checked (a missing extra file fails here, early)."""
        mode = str(student.get("vocab", "full"))
        if mode not in VOCAB_MODES:
            raise ConfigError(f"student.vocab={mode!r}: must be one of {', '.join(VOCAB_MODES)}")
        min_count = student.get("vocab_min_count", 1)
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ConfigError(f"student.vocab_min_count={min_count!r}: must be an integer >= 1")
        extra = tuple(str(p) for p in (student.get("vocab_extra_texts") or ()))
        missing = [p for p in extra if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"student.vocab_extra_texts: no such file {missing[0]} (give .txt, .jsonl or .csv "
                              "files whose text the trimmed vocabulary must cover)")
        if extra and mode != "trim":
            raise ConfigError("student.vocab_extra_texts is set but student.vocab=full keeps every token anyway; "
                              "set student.vocab=trim or drop the extra texts")
        return cls(mode=mode, min_count=int(min_count), extra_texts=extra)


@dataclass(frozen=True)
class KeptVocabulary:
    """The teacher ids a trimmed student keeps; new id ``i`` is teacher id ``kept_ids[i]``."""

    kept_ids: np.ndarray  # (K,) int64, strictly increasing teacher ids
    teacher_vocab_size: int  # rows of the teacher's embedding table
    unk_id: int  # the teacher's unknown-token id (always kept)
    dropped_token_share: float = 0.0  # share of the counted corpus tokens whose id is not kept

    def __len__(self) -> int:
        return len(self.kept_ids)

    def new_id(self, teacher_id: int) -> int:
        index = int(np.searchsorted(self.kept_ids, teacher_id))
        if index >= len(self.kept_ids) or self.kept_ids[index] != teacher_id:
            raise KeyError(f"teacher id {teacher_id} is not in the kept vocabulary")
        return index

    def old_to_new(self) -> torch.Tensor:
        """(teacher_vocab_size,) int64: the new id of each teacher id; a dropped id, which the student
        cannot represent, maps to the new unk id."""
        table = torch.full((self.teacher_vocab_size,), self.new_id(self.unk_id), dtype=torch.long)
        table[torch.from_numpy(self.kept_ids)] = torch.arange(len(self.kept_ids))
        return table

    def digest(self) -> str:
        return hash_object({"kept": hash_object(self.kept_ids.tolist()), "teacher_rows": self.teacher_vocab_size})

    def summary(self) -> dict[str, Any]:
        """Plain data for a manifest."""
        return {"mode": "trim", "size": len(self), "teacher_size": self.teacher_vocab_size,
                "dropped_token_share": round(self.dropped_token_share, 6), "digest": self.digest()}


def read_texts(paths: Iterable[str | Path], text_field: str = "text") -> Iterator[str]:
    """The documents of plain-text (one per line), JSONL or CSV files (``text`` column/field)."""
    for path in map(Path, paths):
        if path.suffix == ".csv":
            for _, row in iter_records(path, ConfigError, required_columns=(text_field,)):
                if row.get(text_field):
                    yield str(row[text_field])
        else:
            for text, _ in iter_documents(path, text_field):
                yield text


def count_tokens(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], vocab_size: int, batch_size: int = 256
) -> np.ndarray:
    """(vocab_size,) int64 occurrences of each id in the tokenised ``texts`` (special tokens included)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    texts = iter(texts)
    while batch := list(islice(texts, batch_size)):
        for ids in tokenizer(batch, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]:
            np.add.at(counts, np.asarray(ids, dtype=np.int64), 1)
    return counts


def choose_kept_vocabulary(
    token_counts: np.ndarray,
    min_count: int,
    always_keep: Iterable[int],
    unk_id: int,
    teacher_vocab_size: int,
    extra_counts: np.ndarray | None = None,
) -> KeptVocabulary:
    """Keep every id used ``>= min_count`` times (corpus plus extra counts) and every id in ``always_keep``.

    ``always_keep`` holds the special and added tokens: the student must be able to read ``[CLS]``,
    ``[MASK]`` and padding even where the corpus never stored them.
    """
    corpus = np.zeros(teacher_vocab_size, dtype=np.int64)
    corpus[: len(token_counts)] = np.asarray(token_counts, dtype=np.int64)[:teacher_vocab_size]
    counts = corpus.copy()
    if extra_counts is not None:
        counts[: len(extra_counts)] += np.asarray(extra_counts, dtype=np.int64)[:teacher_vocab_size]
    keep = counts >= min_count
    forced = np.asarray(sorted({*always_keep, unk_id}), dtype=np.int64)
    if len(forced) and (forced.min() < 0 or forced.max() >= teacher_vocab_size):
        raise ValueError(f"special token ids {forced.tolist()} fall outside the teacher's {teacher_vocab_size} rows")
    keep[forced] = True
    kept_ids = np.flatnonzero(keep).astype(np.int64)
    dropped, total = int(corpus[~keep].sum()), int(corpus.sum())
    return KeptVocabulary(kept_ids=kept_ids, teacher_vocab_size=teacher_vocab_size, unk_id=unk_id,
                          dropped_token_share=dropped / total if total else 0.0)


def kept_vocabulary_for(
    tokenizer: PreTrainedTokenizerBase,
    token_counts: np.ndarray,
    settings: VocabTrimSettings,
    teacher_vocab_size: int,
) -> KeptVocabulary:
    """The kept vocabulary of a run: corpus counts, extra texts counted with the same tokenizer, specials
    and added tokens (they are outside the model's own pieces)."""
    extra = count_tokens(tokenizer, read_texts(settings.extra_texts), teacher_vocab_size) if settings.extra_texts else None
    specials = sorted({*tokenizer.all_special_ids, *tokenizer.get_added_vocab().values()})
    return choose_kept_vocabulary(token_counts, settings.min_count, specials,
                                  tokenizer.unk_token_id, teacher_vocab_size, extra_counts=extra)


# --------------------------------------------------------------------------- models
_SPECIAL_ID_CONFIG_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                           "mask_token_id", "unk_token_id")


def trim_masked_lm(model: PreTrainedModel, kept: KeptVocabulary) -> PreTrainedModel:
    """A copy of ``model`` whose vocabulary rows are ``kept.kept_ids``; everything else is unchanged.

    Special-token ids in the config are remapped; a special id that is not kept becomes None.
    Which parameters are trainable is carried over (frozen positions stay frozen).
    """
    vocab_size = model.config.vocab_size
    if vocab_size != kept.teacher_vocab_size:
        raise ValueError(f"the model has {vocab_size} vocabulary rows but the kept vocabulary was chosen for "
                         f"{kept.teacher_vocab_size}")
    index = torch.from_numpy(kept.kept_ids)
    state = model.state_dict()
    rows = {name for name, t in state.items() if name.endswith(_VOCAB_ROW_SUFFIXES) and t.shape[:1] == (vocab_size,)}
    if not any(name.endswith("word_embeddings.weight") for name in rows):
        raise TypeError(f"{type(model).__name__}: no word-embedding table found to trim")
    state = {name: t.index_select(0, index.to(t.device)) if name in rows else t for name, t in state.items()}
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.vocab_size = len(kept)
    for key in _SPECIAL_ID_CONFIG_KEYS:
        old = getattr(config, key, None)
        if isinstance(old, int):
            setattr(config, key, kept.new_id(old) if old in set(kept.kept_ids.tolist()) else None)
    trimmed = model.__class__(config)
    trimmed.load_state_dict(state, strict=True)
    trimmed.to(next(model.parameters()).device)
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, param in trimmed.named_parameters():
        param.requires_grad_(trainable.get(name, True))
    trimmed.train(model.training)
    return trimmed


class KeptVocabularyHead:
    """A frozen model's MLM logits on the kept ids only: ``(..., H) -> (..., K)``.

    Equal to ``mlm_head(model)(h).index_select(-1, kept_ids)``; the projection's kept rows are
    sliced once (per device), so the dropped columns are never computed. Not an ``nn.Module`` on
    purpose: it holds teacher weights, which must stay out of the student's module tree (DDP would
    broadcast them every step, checkpoints would carry them).
    """

    def __init__(self, model: PreTrainedModel, kept_ids: torch.Tensor) -> None:
        self.transform, projection = mlm_head_parts(model)
        with torch.no_grad():
            ids = kept_ids.to(projection.weight.device)
            self.weight = projection.weight.index_select(0, ids).detach()
            self.bias = projection.bias.index_select(0, ids).detach() if projection.bias is not None else None

    def to(self, device: torch.device | str) -> KeptVocabularyHead:
        self.weight = self.weight.to(device)
        self.bias = self.bias.to(device) if self.bias is not None else None
        return self

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.transform(hidden), self.weight, self.bias)

