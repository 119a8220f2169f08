"""A distillation objective: the configured loss terms (``distill.terms``, conf/distill/default.yaml;
a term runs when its weight is above 0), their weighted sum, what they need, why each runs or not,
and, through ``objective_identity``, what a student's key covers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.masking import IGNORE_INDEX
from domain_distil.modeling.objectives.base import (
    TERMS,
    LogitUse,
    LossTerm,
    ModelNeeds,
    PairShape,
    TermInputs,
    build_term,
)
from domain_distil.modeling.objectives.paper import LastHiddenCosine, LogitMSE, MaskedLM, SoftTargetKL

# teacher head kind -> (where the teacher's logits come from, the end of the run's loss line)
_HEAD_WORDS = {
    "trained": ("the teacher's trained MLM head", "teacher has a trained MLM head"),
    "fitted": ("an MLM head fitted on the corpus, teacher.mlm_head.strategy=fit", "teacher MLM head fitted on the corpus"),
    "none": ("no teacher MLM head", "teacher has no MLM head"),
}
RECIPES_HINT = "distill=sanh, distill=hidden, distill=layerwise, distill=minilm"

# The paper's four terms in a student's key keep the flat form every student was keyed by before
# `distill.terms` existed (weight 0 included), so those students keep their keys. Every other term
# enters the key only while it runs, as `terms.<name>` with its settings: adding a term to the code
# (weight 0 in default.yaml) changes no existing key.
PAPER_IDENTITY_KEYS = {
    ("ce", "weight"): "alpha_ce",
    ("ce", "temperature"): "temperature",
    ("mlm", "weight"): "alpha_mlm",
    ("cos", "weight"): "alpha_cos",
    ("mse", "weight"): "alpha_mse",
}
PAPER_TERMS = frozenset(name for name, _ in PAPER_IDENTITY_KEYS)


def objective_identity(distill: Mapping[str, Any]) -> dict[str, Any]:
    """``distill`` as a student's key sees it: ``terms`` replaced by the paper's flat keys plus the running terms.

    A recipe without ``terms`` (a manifest written before the mapping existed) is already in that form.
    """
    identity = {k: v for k, v in distill.items() if k != "terms"}
    running: dict[str, Any] = {}
    for name, settings in (distill.get("terms") or {}).items():
        for setting, value in settings.items():
            if (name, setting) in PAPER_IDENTITY_KEYS:
                identity[PAPER_IDENTITY_KEYS[name, setting]] = value
            elif name in PAPER_TERMS:  # never hashed silently: two recipes would share a key
                known = [key for term, key in PAPER_IDENTITY_KEYS if term == name]
                raise ConfigError(f"distill.terms.{name}.{setting}: {name} takes only {', '.join(known)} (a new "
                                  "setting of the paper's terms needs a place in PAPER_IDENTITY_KEYS)")
        if name not in PAPER_TERMS and float(settings.get("weight", 0)) > 0:
            running[name] = dict(settings)
    if running:
        identity["terms"] = running
    return identity


def select_rows(attention_mask: torch.Tensor, labels: torch.Tensor, restrict_to_mask: bool) -> torch.Tensor:
    """(B, L) bool: the rows the logit losses use."""
    return labels != IGNORE_INDEX if restrict_to_mask else attention_mask


@dataclass(frozen=True)
class Objective:
    """Every configured term (those with weight 0 too, so logs can say what is off) and the logit rows."""

    terms: tuple[LossTerm, ...]
    # The rows the logit terms compare: every attended token (the reference's default) or only the
    # MLM targets (the reference's --restrict_ce_to_mask).
    restrict_ce_to_mask: bool = False

    @classmethod
    def from_config(cls, distill: Mapping[str, Any]) -> Objective:
        """The objective of a ``distill`` config (a recipe of ``conf/distill/``), checked."""
        configured = distill.get("terms")
        if not isinstance(configured, Mapping):
            raise ConfigError(f"distill.terms must map loss-term names to their settings ({', '.join(TERMS)}), "
                              f"got {configured!r}")
        terms = tuple(build_term(name, settings) for name, settings in configured.items())  # in the config's order
        objective = cls(terms, bool(distill.get("restrict_ce_to_mask", False)))
        objective.validate()
        return objective

    @classmethod
    def paper(cls) -> Objective:
        """The reference's 5/2/1 recipe at T=2 (``conf/distill/default.yaml``, checked equal by the tests)."""
        return cls((SoftTargetKL(weight=5.0, temperature=2.0), MaskedLM(weight=2.0), LastHiddenCosine(weight=1.0),
                    LogitMSE(weight=0.0)))

    @property
    def running(self) -> tuple[LossTerm, ...]:
        return tuple(term for term in self.terms if term.on)

    def validate(self) -> None:
        if not self.running:
            raise ConfigError(f"distill: every loss weight is 0; set distill.terms.<term>.weight > 0 for at least "
                              f"one of {', '.join(term.name for term in self.terms)} (or pick a recipe: {RECIPES_HINT})")

    def teacher_logit_terms(self) -> tuple[LossTerm, ...]:
        """The running terms that read the teacher's logits (so its MLM head)."""
        return tuple(term for term in self.running if term.logits is LogitUse.BOTH)

    @property
    def needs_teacher_logits(self) -> bool:
        return bool(self.teacher_logit_terms())

    @property
    def needs_student_logits(self) -> bool:
        return any(term.logits is not LogitUse.NONE for term in self.running)

    def check(self, pair: PairShape) -> None:
        """Every running term's check against the two models (a ConfigError before any work)."""
        for term in self.running:
            term.check(pair)

    def needs(self, pair: PairShape) -> tuple[ModelNeeds, ModelNeeds]:
        """What the student and the teacher must expose for the running terms."""
        student, teacher = ModelNeeds(), ModelNeeds()
        for term in self.running:
            term_student, term_teacher = term.needs(pair)
            student, teacher = student | term_student, teacher | term_teacher
        return student, teacher

    def logit_rows(self, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Where the MLM heads run: the logit rows, or only the targets when no term needs teacher logits."""
        restrict = self.restrict_ce_to_mask or not self.needs_teacher_logits
        return select_rows(attention_mask, labels, restrict)

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum of the running terms, and each term's unweighted value."""
        values = {term.name: term(inputs) for term in self.running}
        total = sum(term.weight * values[term.name] for term in self.running)
        return total, values  # type: ignore[return-value]

    def settings(self) -> dict[str, Any]:
        """Plain data for hyperparameters and manifests: every term's settings and the logit rows."""
        return {"terms": {term.name: asdict(term) for term in self.terms},  # type: ignore[call-overload]
                "restrict_ce_to_mask": self.restrict_ce_to_mask}

    # -- which losses run, and why (logged at the start of a run and stored in the student manifest) --

    def loss_terms(self, teacher_head: str) -> dict[str, dict[str, object]]:
        """Each term: its weight, whether it runs, and the reason, as plain data for a manifest
        (``teacher_head``: a key of ``_HEAD_WORDS``, from :func:`teacher_head_kind`)."""
        if teacher_head not in _HEAD_WORDS:
            raise ValueError(f"teacher_head must be one of {tuple(_HEAD_WORDS)}, got {teacher_head!r}")
        rows = "MLM targets only" if self.restrict_ce_to_mask else "every attended token"
        described = {}
        for term in self.terms:
            teacher_logits = term.logits is LogitUse.BOTH
            if not term.on:
                why = f"off: {term.key('weight')}=0"
            elif teacher_logits and teacher_head == "none":
                # plan_distillation refuses this combination; describe it honestly all the same.
                why = "would run on a random head's logits (refused before distilling)"
            else:
                why = term.what(rows) + (f", teacher logits from {_HEAD_WORDS[teacher_head][0]}" if teacher_logits else "")
            described[term.name] = {"weight": float(term.weight), "runs": term.on, "why": why}
        return described

    def describe(self, teacher_head: str) -> str:
        """One line naming the terms that run (with weights) and why the others do not: ``losses: cos x1
        [1 - cos of ...] | off: ce (distill.terms.ce.weight=0), ... | teacher has no MLM head``."""
        terms = self.loss_terms(teacher_head)
        running = [f"{name} x{t['weight']:g} [{t['why']}]" for name, t in terms.items() if t["runs"]]
        off = [f"{name} ({str(t['why']).removeprefix('off: ')})" for name, t in terms.items() if not t["runs"]]
        return f"losses: {'; '.join(running) or 'none'} | off: {', '.join(off) or 'none'} | {_HEAD_WORDS[teacher_head][1]}"


def teacher_head_kind(has_mlm_head: bool, head_fitted: bool) -> str:
    """``trained``, ``fitted`` or ``none``: where the teacher's logits would come from."""
    return "fitted" if head_fitted else "trained" if has_mlm_head else "none"
