"""Task metrics, predictions and the decision threshold.

- Binary tasks: the head emits 2 logits (softmax cross-entropy); F1, precision and recall are
  those of the positive class (e.g. ``intentful``), as in the paper's Table 8.
- Multi-label tasks: one logit per label (BCE-with-logits); F1, precision and recall are macro
  averages over the labels (torchmetrics ``average="macro"``: each label's score, then the mean,
  so macro-F1 is *not* the harmonic mean of macro-P and macro-R).
- A row (binary) or a label (multi-label) is predicted positive when its probability is
  ``>= threshold``: ``cls_task.threshold``, or ``tune`` (:func:`tune_threshold` on validation data).

Metrics are computed at epoch level (states accumulate over every batch), so a small last batch
never skews the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.functional.classification import binary_f1_score, multilabel_f1_score

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
THRESHOLD_MODES = ("global", "per_label")

# One threshold for every label, or one per label (label order).
Threshold = float | Sequence[float]


def build_metrics(task_type: str, num_labels: int) -> MetricCollection:
    """F1/P/R for a stage. The module feeds 0/1 predictions, so the metrics' own threshold is unused."""
    if task_type == "binary":
        return MetricCollection({"f1": BinaryF1Score(), "precision": BinaryPrecision(), "recall": BinaryRecall()})
    if task_type == "multilabel":
        return MetricCollection({"f1": MultilabelF1Score(num_labels, average="macro"),
                                 "precision": MultilabelPrecision(num_labels, average="macro"),
                                 "recall": MultilabelRecall(num_labels, average="macro")})
    raise ValueError(f"unknown task type {task_type!r}")


def probabilities(logits: Tensor, task_type: str) -> Tensor:
    """Binary: P(positive) per row, shape (B,). Multi-label: sigmoid per label, shape (B, L)."""
    if task_type == "binary":
        return torch.softmax(logits.float(), dim=-1)[:, 1]
    return torch.sigmoid(logits.float())


def threshold_tensor(threshold: Threshold, like: Tensor) -> Tensor:
    """The threshold on ``like``'s device: a scalar, or an (L,) row that broadcasts over (B, L)."""
    return torch.as_tensor(threshold, dtype=torch.float32, device=like.device)


def predictions(logits: Tensor, task_type: str, threshold: Threshold) -> Tensor:
    probs = probabilities(logits, task_type)
    return (probs >= threshold_tensor(threshold, probs)).long()


def format_threshold(threshold: Threshold) -> str:
    """``0.35`` or ``[0.30, 0.55, ...]`` for logs."""
    if isinstance(threshold, float | int):
        return f"{threshold:.2f}"
    return "[" + ", ".join(f"{t:.2f}" for t in threshold) + "]"


def task_loss(logits: Tensor, targets: Tensor, task_type: str) -> Tensor:
    if task_type == "binary":
        return F.cross_entropy(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets.float())


def f1_at(probs: Tensor, targets: Tensor, task_type: str, threshold: Threshold) -> float:
    preds = (probs >= threshold_tensor(threshold, probs)).long()
    if task_type == "binary":
        return float(binary_f1_score(preds, targets.long()))
    return float(multilabel_f1_score(preds, targets.long(), num_labels=targets.size(1), average="macro"))


def _best_on_grid(probs: Tensor, targets: Tensor, task_type: str, grid: tuple[float, ...]) -> tuple[float, float]:
    scored = [(f1_at(probs, targets, task_type, t), -abs(t - 0.5), t) for t in grid]
    best_f1, _, best_threshold = max(scored)
    return best_threshold, best_f1


def tune_threshold(probs: Tensor, targets: Tensor, task_type: str, grid: tuple[float, ...] = THRESHOLD_GRID,
                   mode: str = "global") -> tuple[Threshold, float]:
    """The grid threshold(s) with the best validation F1 (ties: nearest 0.5). Returns (threshold, f1).

    ``mode="global"``: one threshold, the best macro F1 (binary: the positive class's F1).
    ``mode="per_label"`` (multi-label): label j gets the grid value with the best F1 of label j
    alone, a list in label order; the returned F1 is the macro F1 of those thresholds together
    (each label's F1 depends only on its own threshold, so this maximises macro F1 on the grid).
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"threshold mode must be one of {THRESHOLD_MODES}, got {mode!r}")
    if mode == "global" or task_type == "binary":
        return _best_on_grid(probs, targets, task_type, grid)
    per_label = [_best_on_grid(probs[:, j], targets[:, j], "binary", grid)[0] for j in range(probs.size(1))]
    return per_label, f1_at(probs, targets, task_type, per_label)
