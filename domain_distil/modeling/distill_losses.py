"""The Distil* loss terms (reference ``Distiller.step``), each a small pure function.

The logit terms take the already-selected rows: (N, V) matrices for the N tokens in the row
selection (every attended token by default, only MLM targets with ``restrict_ce_to_mask``).
The cosine term takes full (B, L, H) hidden states and the (B, L) attention mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from domain_distil.modeling.masking import IGNORE_INDEX


def soft_target_loss(
    student_rows: torch.Tensor, teacher_rows: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * (1/N) * sum_rows sum_v p_t (log p_t - log p_s)`` with ``p = softmax(logits / T)``.

    That is ``KLDivLoss(reduction="batchmean")`` on the (N, V) rows (divided by N, not B), times T^2.
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
            raise ValueError(f"distill loss weights must be >= 0, got {negative}")
        if not any(weights.values()):
            raise ValueError(
                "distill: every loss weight is 0; set at least one of alpha_ce/alpha_mlm/alpha_cos/alpha_mse"
            )
        if self.temperature <= 0:
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature}")


def select_rows(attention_mask: torch.Tensor, labels: torch.Tensor, restrict_to_mask: bool) -> torch.Tensor:
    """(B, L) bool: the rows the logit losses use."""
    return labels != IGNORE_INDEX if restrict_to_mask else attention_mask
