"""Layer-wise hidden-state distillation (TinyBERT / TextBrewer style) over the student's layer map: student
layer ``i``, copied from teacher layer ``layer_map[i]`` (``[0, 2, 4, 7, 9, 11]`` for 12 -> 6), is compared
with that layer's output, the embeddings with the embeddings. Needs no MLM head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.objectives.base import (
    LossTerm,
    ModelNeeds,
    PairShape,
    TermInputs,
    register,
)
from domain_distil.modeling.objectives.paper import cosine_hidden_loss


def hidden_state_loss(
    student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor, metric: str
) -> torch.Tensor:
    """One (B, L, H) pair over attended tokens: mean ``1 - cos``, or mean squared error per element."""
    if metric == "cosine":
        return cosine_hidden_loss(student, teacher, attention_mask)
    return F.mse_loss(student[attention_mask].float(), teacher[attention_mask].float())


def layer_pair_losses(
    student_states: Sequence[torch.Tensor],
    teacher_states: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    attention_mask: torch.Tensor,
    metric: str,
) -> torch.Tensor:
    """(1 + n_layers,) losses: the embedding output (index 0 of both ``hidden_states``) first, then each
    student layer against its teacher layer."""
    return torch.stack([hidden_state_loss(student_states[s], teacher_states[t], attention_mask, metric)
                        for s, t in [(0, 0), *((i + 1, t + 1) for i, t in enumerate(layer_map))]])


def check_layer_map(term: LossTerm, pair: PairShape) -> tuple[int, ...]:
    """The pair's layer map, or a ConfigError saying why a layer-wise term cannot run."""
    layer_map = pair.layer_map
    if layer_map is None:
        raise ConfigError(
            f"distill.terms.{term.name} compares each student layer with the teacher layer it was copied from, "
            "but this student records no layer map (config.distil_layers): build the student from the teacher "
            f"(student.name_or_path=null) or set {term.key('weight')}=0")
    if len(layer_map) != pair.student.layers or not all(0 <= t < pair.teacher.layers for t in layer_map):
        raise ConfigError(
            f"distill.terms.{term.name}: the student's layer map {list(layer_map)} does not fit a "
            f"{pair.student.layers}-layer student of a {pair.teacher.layers}-layer teacher")
    return layer_map


class MappedLayerTerm(LossTerm):
    """A term over the student's layer map that compares like with like, by one of ``metrics``."""

    metrics: ClassVar[tuple[str, ...]]
    matched: ClassVar[str]  # the ModelShape size both models must share: "hidden" or "heads"
    metric: str

    def __post_init__(self) -> None:
        if self.metric not in self.metrics:
            raise ConfigError(f"{self.key('metric')} must be one of {', '.join(self.metrics)}, got {self.metric!r}")

    def check(self, pair: PairShape) -> None:
        check_layer_map(self, pair)
        student, teacher = getattr(pair.student, self.matched), getattr(pair.teacher, self.matched)
        if student != teacher:
            raise ConfigError(
                f"distill.terms.{self.name} compares layers one to one, so the student's {self.matched} size must be "
                f"the teacher's; got {student} and {teacher} (distill.terms.minilm works across sizes)")


@register
@dataclass(frozen=True)
class LayerwiseHidden(MappedLayerTerm):
    """Mean over the embedding output and every student layer of the hidden-state loss to its teacher layer."""

    name = "layers"
    metrics = ("cosine", "mse")
    matched = "hidden"
    weight: float
    metric: str

    def needs(self, pair: PairShape) -> tuple[ModelNeeds, ModelNeeds]:
        return ModelNeeds(hidden_states=True), ModelNeeds(hidden_states=True)

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        assert inputs.pair.layer_map is not None
        return layer_pair_losses(inputs.student.hidden_states, inputs.teacher.hidden_states,
                                 inputs.pair.layer_map, inputs.attention_mask, self.metric).mean()

    def what(self, logit_rows: str) -> str:
        measure = "1 - cos" if self.metric == "cosine" else "MSE"
        return (f"{measure} of every student layer's hidden states (and the embeddings') against the teacher layer "
                "it was copied from, over attended tokens, needs no MLM head")
