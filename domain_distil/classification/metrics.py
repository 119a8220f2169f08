"""Task metrics, predictions and the decision threshold.

- Binary tasks: the head emits 2 logits (softmax cross-entropy); F1, precision and recall are
  those of the positive class (e.g. ``intentful``), as in the paper's Table 8.
- Multi-label tasks: one logit per label (BCE-with-logits); F1, precision and recall are macro
  averages over the labels (torchmetrics ``average="macro"``: each label's score, then the mean,
  so macro-F1 is *not* the harmonic mean of macro-P and macro-R).
- Threshold: a row (binary) or a label (multi-label) is predicted positive when its probability is
  ``>= threshold``. A fixed threshold comes from ``cls_task.threshold``; ``tune`` picks, after
  training, the grid value (0.05, 0.10, ..., 0.95) with the best validation F1 of the best
  checkpoint (ties go to the value nearest 0.5) and uses it for the test set.

Metrics are always computed at epoch level: states accumulate over every batch and ``compute()``
runs once per epoch, so a small last batch never skews the score.
"""

from __future__ import annotations

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

METRIC_NAMES = ("f1", "precision", "recall")
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


def build_metrics(task_type: str, num_labels: int) -> MetricCollection:
    """F1/P/R for a stage. The module feeds 0/1 predictions, so the metrics' own threshold is unused."""
    if task_type == "binary":
        return MetricCollection({"f1": BinaryF1Score(), "precision": BinaryPrecision(), "recall": BinaryRecall()})
    if task_type == "multilabel":
        return MetricCollection(
            {
                "f1": MultilabelF1Score(num_labels, average="macro"),
                "precision": MultilabelPrecision(num_labels, average="macro"),
                "recall": MultilabelRecall(num_labels, average="macro"),
            }
        )
    raise ValueError(f"unknown task type {task_type!r}")


def probabilities(logits: Tensor, task_type: str) -> Tensor:
    """Binary: P(positive) per row, shape (B,). Multi-label: sigmoid per label, shape (B, L)."""
    if task_type == "binary":
        return torch.softmax(logits.float(), dim=-1)[:, 1]
    return torch.sigmoid(logits.float())


def predictions(logits: Tensor, task_type: str, threshold: float) -> Tensor:
    return (probabilities(logits, task_type) >= threshold).long()


def task_loss(logits: Tensor, targets: Tensor, task_type: str) -> Tensor:
    if task_type == "binary":
        return F.cross_entropy(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets.float())


def f1_at(probs: Tensor, targets: Tensor, task_type: str, threshold: float) -> float:
    preds = (probs >= threshold).long()
    if task_type == "binary":
        return float(binary_f1_score(preds, targets.long()))
    return float(multilabel_f1_score(preds, targets.long(), num_labels=targets.size(1), average="macro"))


def tune_threshold(probs: Tensor, targets: Tensor, task_type: str,
                   grid: tuple[float, ...] = THRESHOLD_GRID) -> tuple[float, float]:
    """The grid threshold with the best validation F1 (ties: nearest 0.5). Returns (threshold, f1)."""
    scored = [(f1_at(probs, targets, task_type, t), -abs(t - 0.5), t) for t in grid]
    best_f1, _, best_threshold = max(scored)
    return best_threshold, best_f1
