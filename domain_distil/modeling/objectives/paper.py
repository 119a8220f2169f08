"""The Distil* loss terms (reference ``Distiller.step``): soft-target KL, MLM, cosine, logit MSE. The logit
terms take (N, V) rows already selected (every attended token, or the MLM targets: ``restrict_ce_to_mask``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.masking import IGNORE_INDEX
from domain_distil.modeling.objectives.base import LogitUse, LossTerm, TermInputs, register


def soft_target_loss(
    student_rows: torch.Tensor, teacher_rows: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * (1/N) * sum_rows sum_v p_t (log p_t - log p_s)`` with ``p = softmax(logits / T)``:
    ``KLDivLoss(reduction="batchmean")`` on the (N, V) rows (divided by N, not B), times T^2.

    With a trimmed student (``student.vocab=trim``) both inputs hold only the K kept columns, so each
    softmax renormalises over the kept vocabulary, ``p^K(v) = p(v) / sum_{u in K} p(u)``: the loss is the
    KL between the two distributions conditioned on the kept ids, equal to the untrimmed loss when the
    teacher and the untrimmed student put no mass on dropped ids (``tests/test_vocab_trim.py`` checks both).
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


def _logits(inputs: TermInputs) -> tuple[torch.Tensor, torch.Tensor]:
    assert inputs.student_logits is not None and inputs.teacher_logits is not None
    return inputs.student_logits, inputs.teacher_logits


@register
@dataclass(frozen=True)
class SoftTargetKL(LossTerm):
    """The reference's ``L_ce``: KL between the teacher's and the student's softened distributions."""

    name = "ce"
    logits = LogitUse.BOTH
    weight: float
    temperature: float

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"{self.key('temperature')} must be > 0, got {self.temperature}")

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        return soft_target_loss(*_logits(inputs), self.temperature)

    def what(self, logit_rows: str) -> str:
        return f"soft-target KL at T={self.temperature:g} over {logit_rows}"


@register
@dataclass(frozen=True)
class MaskedLM(LossTerm):
    """The reference's ``L_mlm``: the student's own cross-entropy on the masked tokens."""

    name = "mlm"
    logits = LogitUse.STUDENT_TARGETS
    weight: float

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        assert inputs.student_logits is not None and inputs.rows is not None
        return mlm_loss(inputs.student_logits, inputs.labels[inputs.rows])

    def what(self, logit_rows: str) -> str:
        return "student MLM cross-entropy on the masked tokens, student head only"


@register
@dataclass(frozen=True)
class LastHiddenCosine(LossTerm):
    """The reference's ``L_cos``: 1 - cos between the last hidden states, over attended tokens."""

    name = "cos"
    weight: float

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        return cosine_hidden_loss(inputs.student.last_hidden, inputs.teacher.last_hidden, inputs.attention_mask)

    def what(self, logit_rows: str) -> str:
        return "1 - cos of the last hidden states over attended tokens, needs no MLM head"


@register
@dataclass(frozen=True)
class LogitMSE(LossTerm):
    """The reference's optional ``L_mse``: squared error between raw logits, per row."""

    name = "mse"
    logits = LogitUse.BOTH
    weight: float

    def __call__(self, inputs: TermInputs) -> torch.Tensor:
        return logit_mse_loss(*_logits(inputs))

    def what(self, logit_rows: str) -> str:
        return f"MSE of raw logits over {logit_rows}"
