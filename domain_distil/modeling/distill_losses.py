"""The Distil* loss terms (reference ``Distiller.step``), each a small pure function.

The logit terms take the already-selected rows: (N, V) matrices for the N tokens in the row
selection (every attended token by default, only MLM targets with ``restrict_ce_to_mask``).
The cosine term takes full (B, L, H) hidden states and the (B, L) attention mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.masking import IGNORE_INDEX


def soft_target_loss(
    student_rows: torch.Tensor, teacher_rows: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * (1/N) * sum_rows sum_v p_t (log p_t - log p_s)`` with ``p = softmax(logits / T)``.

    That is ``KLDivLoss(reduction="batchmean")`` on the (N, V) rows (divided by N, not B), times T^2.

    With a trimmed student (``student.vocab=trim``) both inputs hold only the K kept columns (the
    teacher's logits gathered to the kept ids). The softmax over them renormalises each
    distribution over the kept vocabulary, ``p^K(v) = p(v) / sum_{u in K} p(u)``, so the loss is
    exactly the full-vocabulary KL between the teacher's and the student's distributions each
    conditioned on the kept ids. It equals the untrimmed loss when the teacher and the untrimmed
    student put no mass on dropped ids (``tests/test_vocab_trim.py`` checks both statements).
    """
    log_p_s = F.log_softmax(student_rows.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_rows.float() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def mlm_loss(student_rows: torch.Tensor, row_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the raw student logits, averaged over the rows whose label is not -100."""
    return F.cross_entropy(student_rows.float(), row_labels, ignore_index=IGNORE_INDEX)


def logit_mse_loss(student_rows: torch.Tensor, teacher_rows: torch.Tensor) -> torch.Tensor:
    """``sum((s - t)^2) / N`` on raw logits (``MSELoss(reduction="sum") / N``)."""
    return F.mse_loss(student_rows.float(), teacher_rows.float(), reduction="sum") / student_rows.shape[0]


def cosine_hidden_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean over attended tokens of ``1 - cos(h_s, h_t)`` (``CosineEmbeddingLoss``, target +1)."""
    s = student_hidden[attention_mask].float()  # (N, H)
    t = teacher_hidden[attention_mask].float()
    return (1.0 - F.cosine_similarity(s, t, dim=-1)).mean()


@dataclass(frozen=True)
class LossWeights:
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    alpha_mse: float = 0.0
    temperature: float = 2.0
    restrict_ce_to_mask: bool = False

    @classmethod
    def from_config(cls, distill: Mapping[str, Any]) -> LossWeights:
        """The weights of a ``distill`` config (a recipe of ``conf/distill/``), as floats."""
        return cls(**{name: float(distill[name]) for name in ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse",
                                                               "temperature")},
                   restrict_ce_to_mask=bool(distill["restrict_ce_to_mask"]))

    @property
    def needs_student_logits(self) -> bool:
        return self.alpha_ce > 0 or self.alpha_mlm > 0 or self.alpha_mse > 0

    @property
    def needs_teacher_logits(self) -> bool:
        return self.alpha_ce > 0 or self.alpha_mse > 0

    def validate(self) -> None:
        weights = {
            "alpha_ce": self.alpha_ce,
            "alpha_mlm": self.alpha_mlm,
            "alpha_cos": self.alpha_cos,
            "alpha_mse": self.alpha_mse,
        }
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ConfigError(f"distill loss weights must be >= 0, got {negative}")
        if not any(weights.values()):
            raise ConfigError(
                "distill: every loss weight is 0; set at least one of alpha_ce/alpha_mlm/alpha_cos/alpha_mse "
                "(or pick a recipe: distill=sanh, distill=hidden)"
            )
        if self.temperature <= 0:
            raise ConfigError(f"distill.temperature must be > 0, got {self.temperature}")


def select_rows(attention_mask: torch.Tensor, labels: torch.Tensor, restrict_to_mask: bool) -> torch.Tensor:
    """(B, L) bool: the rows the logit losses use."""
    return labels != IGNORE_INDEX if restrict_to_mask else attention_mask


# -- which losses run, and why (logged at the start of a run and stored in the student manifest) --

TEACHER_HEAD_KINDS = ("trained", "fitted", "none")


def loss_terms(weights: LossWeights, teacher_head: str) -> dict[str, dict[str, object]]:
    """Each loss term: its weight, whether it runs, and the reason, as plain data for a manifest.

    :param teacher_head: ``trained`` (the checkpoint has MLM-head weights), ``fitted`` (a head was
        fitted on the corpus with the body frozen, ``teacher.mlm_head.strategy=fit``) or ``none``.
    """
    if teacher_head not in TEACHER_HEAD_KINDS:
        raise ValueError(f"teacher_head must be one of {TEACHER_HEAD_KINDS}, got {teacher_head!r}")
    head_words = {
        "trained": "the teacher's trained MLM head",
        "fitted": "an MLM head fitted on the corpus, teacher.mlm_head.strategy=fit",
        "none": "no teacher MLM head",
    }[teacher_head]
    rows = "MLM targets only" if weights.restrict_ce_to_mask else "every attended token"

    def term(weight: float, name: str, what: str, needs_teacher_logits: bool) -> dict[str, object]:
        if weight <= 0:
            why = f"off: distill.{name}=0"
        elif needs_teacher_logits and teacher_head == "none":
            # plan_distillation refuses this combination; describe it honestly all the same.
            why = "would run on a random head's logits (refused before distilling)"
        else:
            why = what + (f", teacher logits from {head_words}" if needs_teacher_logits else "")
        return {"weight": float(weight), "runs": weight > 0, "why": why}

    return {
        "ce": term(weights.alpha_ce, "alpha_ce",
                   f"soft-target KL at T={weights.temperature:g} over {rows}", needs_teacher_logits=True),
        "mlm": term(weights.alpha_mlm, "alpha_mlm",
                    "student MLM cross-entropy on the masked tokens, student head only", needs_teacher_logits=False),
        "cos": term(weights.alpha_cos, "alpha_cos",
                    "1 - cos of the last hidden states over attended tokens, needs no MLM head",
                    needs_teacher_logits=False),
        "mse": term(weights.alpha_mse, "alpha_mse", f"MSE of raw logits over {rows}", needs_teacher_logits=True),
    }


def describe_recipe(weights: LossWeights, teacher_has_mlm_head: bool, head_fitted: bool = False) -> str:
    """One line naming the losses that run (with weights) and why the others do not.

    ``teacher_has_mlm_head`` is the checkpoint's own head; ``head_fitted`` says one was fitted
    for a headless teacher. E.g. ``losses: cos x1 [1 - cos of the last hidden states ...] | off:
    ce (distill.alpha_ce=0), ... | teacher has no MLM head``.
    """
    kind = "trained" if teacher_has_mlm_head else "fitted" if head_fitted else "none"
    terms = loss_terms(weights, kind)
    running = [f"{name} x{t['weight']:g} [{t['why']}]" for name, t in terms.items() if t["runs"]]
    off = [f"{name} ({t['why'].removeprefix('off: ')})" for name, t in terms.items() if not t["runs"]]
    teacher = {"trained": "teacher has a trained MLM head",
               "fitted": "teacher MLM head fitted on the corpus",
               "none": "teacher has no MLM head"}[kind]
    return f"losses: {'; '.join(running) or 'none'} | off: {', '.join(off) or 'none'} | {teacher}"
