"""Distillation loss terms, one small class each, registered by name (``distill.terms.<name>``).

Families: ``paper`` (the Distil* terms ce, mlm, cos, mse), ``layerwise`` (layers: every layer's
hidden states over the student's layer map), ``attention`` (attn: attention probabilities per
mapped layer; minilm: MiniLMv2 self-attention relations). ``recipe.Objective`` is the configured
set; ``capture.run_body`` runs a model for what its terms need.
"""

# isort: off
# Importing a family registers its terms; this order (the paper's first) is default.yaml's.
from domain_distil.modeling.objectives import paper  # noqa: F401
from domain_distil.modeling.objectives import layerwise  # noqa: F401
from domain_distil.modeling.objectives import attention  # noqa: F401
# isort: on
from domain_distil.modeling.objectives.base import TERMS, LossTerm, ModelShape, PairShape, TermInputs
from domain_distil.modeling.objectives.capture import run_body
from domain_distil.modeling.objectives.recipe import (
    Objective,
    objective_identity,
    select_rows,
    teacher_head_kind,
)

__all__ = [
    "TERMS",
    "LossTerm",
    "ModelShape",
    "Objective",
    "PairShape",
    "TermInputs",
    "objective_identity",
    "run_body",
    "select_rows",
    "teacher_head_kind",
]
