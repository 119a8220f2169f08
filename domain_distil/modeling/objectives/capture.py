"""Run a model's encoder body and collect what the loss terms need, and nothing more.

Queries, keys and values come from forward hooks on the attention's projection ``Linear`` modules,
registered for one forward and removed after it, so the attention implementation (SDPA) is never changed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel

from domain_distil.modeling.mlm import mlm_body
from domain_distil.modeling.objectives.base import QKV, ModelNeeds, ModelOutputs


def attention_projections(model: PreTrainedModel, layer: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The query, key and value projections of one layer of a BERT-family model (transformers 5.x names)."""
    body = mlm_body(model)
    transformer = getattr(body, "transformer", None)
    if transformer is not None and hasattr(transformer, "layer"):  # DistilBERT: attention.q_lin/k_lin/v_lin
        attention = transformer.layer[layer].attention
        return attention.q_lin, attention.k_lin, attention.v_lin
    encoder = getattr(body, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):  # BERT, RoBERTa, XLM-R: attention.self.query/key/value
        attention = encoder.layer[layer].attention.self
        return attention.query, attention.key, attention.value
    raise TypeError(f"{type(model).__name__}: no BERT-style attention projections to capture in layer {layer}")


def _keep(slots: list[torch.Tensor | None], index: int) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        slots[index] = output

    return hook


def run_body(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, needs: ModelNeeds
) -> ModelOutputs:
    """The body's forward with the hidden states and Q/K/V projections ``needs`` names."""
    slots: dict[int, list[torch.Tensor | None]] = {layer: [None, None, None] for layer in sorted(needs.qkv_layers)}
    handles = [
        projection.register_forward_hook(_keep(layer_slots, index))
        for layer, layer_slots in slots.items()
        for index, projection in enumerate(attention_projections(model, layer))
    ]
    try:
        extra = {"output_hidden_states": True} if needs.hidden_states else {}
        output = mlm_body(model)(input_ids=input_ids, attention_mask=attention_mask, **extra)
    finally:
        for handle in handles:
            handle.remove()
    hidden = tuple(output.hidden_states) if needs.hidden_states else (output[0],)
    return ModelOutputs(hidden, {layer: QKV(*layer_slots) for layer, layer_slots in slots.items()})
