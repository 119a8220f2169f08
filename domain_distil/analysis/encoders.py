"""Encoder lists for the analyses (homonyms, speed) and mean-pooled sentence embeddings.

An entry is ``{id: <display name>, name_or_path: <hub name or local folder>}``: anything
``AutoModel.from_pretrained`` loads, including a distilled student's export folder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class EncoderSpec:
    id: str
    name_or_path: str


def parse_encoders(
    entries: Iterable[Mapping[str, Any]], where: str, resolve_teacher: Callable[[], str] | None = None
) -> list[EncoderSpec]:
    """Validate a config list of encoders; ``where`` names the config key in error messages.

    An entry ``{id: ..., teacher: true}`` stands for the configured teacher; ``resolve_teacher``
    turns it into a path (teachers with a ``builder`` have no name_or_path until they are built).
    """
    specs = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping) and entry.get("teacher") and not entry.get("name_or_path") and resolve_teacher:
            entry = {**entry, "name_or_path": resolve_teacher()}
        if not isinstance(entry, Mapping) or not entry.get("id") or not entry.get("name_or_path"):
            raise ValueError(
                f"{where}[{i}]: expected {{id: <name>, name_or_path: <hub name or folder>}} or "
                f"{{id: <name>, teacher: true}}, got {entry!r}"
            )
        specs.append(EncoderSpec(str(entry["id"]), str(entry["name_or_path"])))
    ids = [s.id for s in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{where}: encoder ids must be unique, repeated: {duplicates}")
    if not specs:
        raise ValueError(f"{where}: the list of encoders is empty")
    return specs


def teacher_resolver(cfg: Any) -> Callable[[], str]:
    """``{teacher: true}`` entries -> the configured teacher's folder (built on first use)."""

    def resolve() -> str:
        from domain_distil.modeling.teachers import resolve_teacher_path

        return resolve_teacher_path(cfg.teacher, cfg.paths.cache_dir)

    return resolve


def load_encoder(spec: EncoderSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The bare encoder (no MLM head) in eval mode, and its tokenizer."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.name_or_path)
        model = AutoModel.from_pretrained(spec.name_or_path)
    except OSError as error:
        raise OSError(f"encoder {spec.id!r}: cannot load {spec.name_or_path!r} as a transformers model: {error}") from error
    return model.eval(), tokenizer


def model_inputs(model: PreTrainedModel, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep only the tokenizer outputs the model accepts (a DistilBERT-style student that dropped
    token-type embeddings has no ``token_type_ids`` argument, while a BERT tokenizer still emits it)."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in accepted}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token vectors over real tokens only: (B, T, H), (B, T) -> (B, H)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@torch.inference_mode()
def embed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int = 128,
    batch_size: int = 16,
) -> torch.Tensor:
    """Mean-pooled last-layer embeddings (float32) of ``texts``, shape (N, H).

    The paper (§6) uses the mean of token embeddings rather than [CLS], since its students are
    distilled without next-sentence prediction. Special tokens count as tokens, as in any mean
    over the encoder's output sequence.
    """
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        hidden = model(**model_inputs(model, batch)).last_hidden_state
        chunks.append(mean_pool(hidden.float(), batch["attention_mask"]))
    return torch.cat(chunks)
