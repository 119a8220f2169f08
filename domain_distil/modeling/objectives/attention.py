"""Self-attention distillation: attention probabilities per mapped layer (``attn``, TinyBERT / MiniLMv1
style) and MiniLMv2 relations (``minilm``, Wang et al. 2021).

Both work on the query/key/value projections captured from the two models (``capture.py``), so
they run with any attention implementation (SDPA included; nothing switches to eager): the
attention probabilities are recomputed as ``softmax(Q_h K_h^T / sqrt(d_h))``, which is what the
model's own attention computes before its dropout. Padded keys get no probability; padded queries
are not averaged over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.objectives.base import (
    QKV,
    LossTerm,
    ModelNeeds,
    PairShape,
    TermInputs,
    register,
)
from domain_distil.modeling.objectives.layerwise import MappedLayerTerm, check_layer_map


def scaled_dot_log_probs(
    left: torch.Tensor, right: torch.Tensor, heads: int, attention_mask: torch.Tensor
) -> torch.Tensor:
    """``log softmax(A_h B_h^T / sqrt(d_h))`` over the keys, (B, heads, L, L), for (B, L, H) inputs.

    Split into ``heads`` of width ``d_h = H / heads``; padded keys get a probability of exactly 0.
    """
    batch, length, width = left.shape
    d_h = width // heads
    a = left.float().reshape(batch, length, heads, d_h).transpose(1, 2)  # (B, heads, L, d_h)
    b = right.float().reshape(batch, length, heads, d_h).transpose(1, 2)
    scores = a @ b.transpose(-1, -2) / d_h**0.5
    keys = attention_mask[:, None, None, :]
    return scores.masked_fill(~keys, torch.finfo(scores.dtype).min).log_softmax(dim=-1)


def row_kl(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over heads and attended query rows of ``sum_keys p_t (log p_t - log p_s)``."""
    keys = attention_mask[:, None, None, :]
    per_key = teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)
    kl = torch.where(keys, per_key, 0.0).sum(-1)  # (B, heads, L)
    return kl.transpose(1, 2)[attention_mask].mean()


def probability_mse(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor,
                    attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over heads, attended query rows and attended keys of ``(p_s - p_t)^2``."""
    squared = (student_log_probs.exp() - teacher_log_probs.exp()) ** 2  # (B, heads, L, L)
    pairs = attention_mask[:, None, :, None] & attention_mask[:, None, None, :]
    return squared[pairs.expand_as(squared)].mean()


def attention_loss(student: QKV, teacher: QKV, heads: int, attention_mask: torch.Tensor, metric: str) -> torch.Tensor:
    """One layer pair's attention-probability loss over ``heads`` heads."""
    s = scaled_dot_log_probs(student.query, student.key, heads, attention_mask)
    t = scaled_dot_log_probs(teacher.query, teacher.key, heads, attention_mask)
    return row_kl(t, s, attention_mask) if metric == "kl" else probability_mse(t, s, attention_mask)


def relation_loss(student: QKV, teacher: QKV, relation_heads: int, attention_mask: torch.Tensor) -> torch.Tensor:
    """MiniLMv2: mean over X in (Q, K, V) of KL(teacher || student) of the relations
    ``softmax(X_r X_r^T / sqrt(d_r))`` over R relation heads of width ``d_r = H / R`` (the widths may differ)."""
    losses = [
        row_kl(scaled_dot_log_probs(t, t, relation_heads, attention_mask),
               scaled_dot_log_probs(s, s, relation_heads, attention_mask), attention_mask)
        for s, t in zip(student, teacher, strict=True)
    ]
    return torch.stack(losses).mean()


@register
@dataclass(frozen=True)
class AttentionProbabilities(MappedLayerTerm):
    """Mean over the student's layers of the attention-probability loss to the teacher layer it was copied from."""

    name = "attn"
    metrics = ("kl", "mse")
    matched = "heads"
    weight: float
    metric: str

    def needs(self, pair: PairShape) -> tuple[ModelNeeds, ModelNeeds]:
        layer_map = check_layer_map(self, pair)
        return ModelNeeds(qkv_layers=frozenset(range(pair.student.layers))), ModelNeeds(qkv_layers=frozenset(layer_map))

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        layer_map: Sequence[int] = inputs.pair.layer_map or ()
        heads = inputs.pair.teacher.heads
        return torch.stack([
            attention_loss(inputs.student.qkv[i], inputs.teacher.qkv[t], heads, inputs.attention_mask, self.metric)
            for i, t in enumerate(layer_map)
        ]).mean()

    def what(self, logit_rows: str) -> str:
        measure = "KL(teacher || student)" if self.metric == "kl" else "MSE"
        return (f"{measure} of every student layer's attention probabilities against the teacher layer it was "
                "copied from, per head over attended tokens, needs no MLM head")


@register
@dataclass(frozen=True)
class MiniLMRelations(LossTerm):
    """MiniLMv2 self-attention relation distillation (one teacher layer -> the student's last layer)."""

    name = "minilm"
    weight: float
    teacher_layer: int  # negative counts from the end: -1 is the last layer
    relation_heads: int | None  # None: the teacher's number of attention heads

    def heads(self, pair: PairShape) -> int:
        return self.relation_heads if self.relation_heads is not None else pair.teacher.heads

    def layers(self, pair: PairShape) -> tuple[int, int]:
        """(student layer, teacher layer), both counted from 0."""
        layer = self.teacher_layer
        return pair.student.layers - 1, (layer + pair.teacher.layers if layer < 0 else layer)

    def check(self, pair: PairShape) -> None:
        if not -pair.teacher.layers <= self.teacher_layer < pair.teacher.layers:
            raise ConfigError(f"{self.key('teacher_layer')}={self.teacher_layer} is out of range for a teacher "
                              f"with {pair.teacher.layers} layers (-1 is the last)")
        heads = self.heads(pair)
        if heads < 1 or pair.student.hidden % heads or pair.teacher.hidden % heads:
            raise ConfigError(f"{self.key('relation_heads')}={heads} must divide both hidden sizes (student "
                              f"{pair.student.hidden}, teacher {pair.teacher.hidden})")

    def needs(self, pair: PairShape) -> tuple[ModelNeeds, ModelNeeds]:
        student_layer, teacher_layer = self.layers(pair)
        return ModelNeeds(qkv_layers=frozenset({student_layer})), ModelNeeds(qkv_layers=frozenset({teacher_layer}))

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        student_layer, teacher_layer = self.layers(inputs.pair)
        return relation_loss(inputs.student.qkv[student_layer], inputs.teacher.qkv[teacher_layer],
                             self.heads(inputs.pair), inputs.attention_mask)

    def what(self, logit_rows: str) -> str:
        heads = self.relation_heads if self.relation_heads is not None else "the teacher's"
        layer = "the teacher's last layer" if self.teacher_layer == -1 else f"teacher layer {self.teacher_layer}"
        return (f"MiniLMv2 Q-Q, K-K and V-V relations of {layer} and the student's last layer over {heads} "
                "relation heads, KL(teacher || student) over attended tokens, needs no MLM head")
