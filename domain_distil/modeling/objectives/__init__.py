"""Distillation loss terms, one small class each, registered by name (``distill.terms.<name>``);
docs/architecture.md, "Add a loss term"."""

# isort: off
# Importing a family registers its terms; this order (the paper's first) is default.yaml's.
from domain_distil.modeling.objectives import paper  # noqa: F401
from domain_distil.modeling.objectives import layerwise  # noqa: F401
from domain_distil.modeling.objectives import attention  # noqa: F401
# isort: on
from domain_distil.modeling.objectives.base import TERMS, ModelShape, PairShape, TermInputs
from domain_distil.modeling.objectives.capture import run_body
from domain_distil.modeling.objectives.recipe import (
    Objective,
    objective_identity,
    select_rows,
    teacher_head_kind,
)

__all__ = ["TERMS", "ModelShape", "Objective", "PairShape", "TermInputs", "objective_identity", "run_body",
           "select_rows", "teacher_head_kind"]
