"""Split a ``*ForMaskedLM`` into its encoder body and its prediction head: distillation runs the body on
every token but the head (a (H, V) projection: 119,547 columns for mBERT) only on the rows a loss needs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import gelu


def mlm_body(model: PreTrainedModel) -> nn.Module:
    return model.base_model


def mlm_head_parts(model: PreTrainedModel) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear]:
    """(the head's transform before the vocabulary projection, the projection) of an MLM model: apart, so
    that a trimmed student's teacher can project onto the kept vocabulary rows only."""
    if hasattr(model, "vocab_projector"):  # DistilBertForMaskedLM
        return (lambda h: model.vocab_layer_norm(model.activation(model.vocab_transform(h)))), model.vocab_projector
    if hasattr(model, "cls"):  # BertForMaskedLM
        predictions = model.cls.predictions
        return predictions.transform, predictions.decoder
    if hasattr(model, "lm_head"):  # RobertaLMHead and its copies (XLM-R, CamemBERT): dense, gelu, LayerNorm
        head = model.lm_head
        return (lambda h: head.layer_norm(gelu(head.dense(h)))), head.decoder
    raise TypeError(f"{type(model).__name__} has no recognised masked-LM head")


def mlm_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping hidden states (..., H) to vocabulary logits (..., V)."""
    transform, projection = mlm_head_parts(model)
    return lambda hidden: projection(transform(hidden))
