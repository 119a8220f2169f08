"""The one way to load an encoder (a hub name or a local transformers folder; classification, analysis
and serving all use it), its content hash, and mean-pooled sentence embeddings."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.common.hashing import hash_object, memoised_model_hash
from domain_distil.modeling.teachers import pooler_free_kwargs, quiet_load_report


def load_encoder(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    tokenizer_path: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The encoder body (``AutoModel``: an MLM checkpoint loads without its head) in eval mode and its
    tokenizer. ``tokenizer_path`` loads the tokenizer from another folder: a serving bundle that references
    its encoder keeps its own copy of the tokenizer. Raises ``FileNotFoundError`` for a local folder
    without ``config.json`` and ``OSError`` naming ``name_or_path`` for anything else that does not
    load, before any weights are read where possible.
    """
    location = str(name_or_path)
    if Path(location).is_dir() and not (Path(location) / "config.json").is_file():
        raise FileNotFoundError(f"{location} has no config.json: not a transformers model folder")
    hub_kwargs = {"revision": revision, "local_files_only": local_files_only}
    try:
        # tokenizer first: it is cheap, and a folder that lacks one fails before the weights load
        if tokenizer_path is None:
            tokenizer = AutoTokenizer.from_pretrained(location, **hub_kwargs)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
        # No pooler (nothing here reads it, and a sentence encoder's checkpoint has none, so it would
        # be random) and no MISSING/UNEXPECTED load table for the MLM head an encoder never uses.
        config = AutoConfig.from_pretrained(location, **hub_kwargs)
        with quiet_load_report():
            model = AutoModel.from_pretrained(location, **hub_kwargs, **pooler_free_kwargs(config))
    except OSError as error:
        raise OSError(f"cannot load {location!r} as a transformers encoder (a hub name, or a folder with "
                      f"config.json, weights and tokenizer files): {error}") from error
    return model.eval(), tokenizer


def encoder_hash(name_or_path: str | Path, revision: str | None = None, cache_dir: str | Path | None = None) -> str:
    """Content hash of a local model folder (memoised under ``cache_dir``), or hash of (hub name, revision).

    It keys the feature cache, goes into ``results.json`` and ties a serving bundle's heads to its encoder.
    """
    if not Path(name_or_path).is_dir():
        return hash_object({"hub": str(name_or_path), "revision": revision})
    return memoised_model_hash(name_or_path, cache_dir)


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
