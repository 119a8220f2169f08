"""Split a ``*ForMaskedLM`` into its encoder body and its prediction head.

Distillation runs the body on every token but the head (a (H, V) projection: 119,547 columns for
mBERT) only on the rows a loss needs, so padding and unused positions never cost a vocabulary
projection.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel


def mlm_body(model: PreTrainedModel) -> nn.Module:
    return model.base_model


def mlm_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping hidden states (..., H) to vocabulary logits (..., V)."""
    if hasattr(model, "vocab_projector"):  # DistilBertForMaskedLM

        def distilbert_head(hidden: torch.Tensor) -> torch.Tensor:
            hidden = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden)))
            return model.vocab_projector(hidden)

        return distilbert_head
    if hasattr(model, "cls"):  # BertForMaskedLM
        return model.cls
    if hasattr(model, "lm_head"):  # RobertaForMaskedLM, XLMRobertaForMaskedLM
        return model.lm_head
    raise TypeError(f"{type(model).__name__} has no recognised masked-LM head")
