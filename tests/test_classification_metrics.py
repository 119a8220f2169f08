"""Binary and macro metrics against hand-computed values; threshold tuning; epoch-level compute."""

from __future__ import annotations

import pytest
import torch

from domain_distil.classification.metrics import build_metrics, predictions, tune_threshold


def _values(collection) -> dict[str, float]:
    return {k: float(v) for k, v in collection.compute().items()}


def test_binary_scores_are_those_of_the_positive_class() -> None:
    preds = torch.tensor([1, 1, 1, 0, 1, 0])
    targets = torch.tensor([1, 0, 1, 0, 0, 1])
    # TP = 2 (rows 0, 2), FP = 2 (rows 1, 4), FN = 1 (row 5)
    metrics = build_metrics("binary", 2)
    metrics.update(preds, targets)
    values = _values(metrics)
    assert values["f1"] == pytest.approx(4 / 7)
    assert values["precision"] == pytest.approx(0.5)
    assert values["recall"] == pytest.approx(2 / 3)


def test_multilabel_scores_are_macro_averages() -> None:
    targets = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    preds = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 0, 0], [0, 0, 1]])
    # label 0: TP 2 FP 1 FN 0 -> P 2/3, R 1,   F1 0.8
    # label 1: TP 1 FP 0 FN 1 -> P 1,   R 1/2, F1 2/3
    # label 2: TP 2 FP 0 FN 1 -> P 1,   R 2/3, F1 0.8
    metrics = build_metrics("multilabel", 3)
    metrics.update(preds, targets)
    values = _values(metrics)
    assert values["precision"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert values["recall"] == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert values["f1"] == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)


def test_epoch_level_compute_differs_from_batch_average() -> None:
    preds = torch.tensor([1, 1, 1, 0, 1, 0])
    targets = torch.tensor([1, 0, 1, 0, 0, 1])
    metrics = build_metrics("binary", 2)
    per_batch = []
    for sl in (slice(0, 2), slice(2, 6)):
        metrics.update(preds[sl], targets[sl])
        per_batch.append(float(build_metrics("binary", 2)(preds[sl], targets[sl])["f1"]))
    assert float(metrics.compute()["f1"]) == pytest.approx(4 / 7)
    assert sum(per_batch) / 2 != pytest.approx(4 / 7)  # (2/3 + 1/2) / 2 = 0.583


def test_predictions_apply_the_threshold_to_probabilities() -> None:
    # softmax([0, log 3]) = [0.25, 0.75]: positive at 0.5, negative at 0.8
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)).item()], [1.0, 0.0]])
    assert predictions(logits, "binary", 0.5).tolist() == [1, 0]
    assert predictions(logits, "binary", 0.8).tolist() == [0, 0]
    multi = torch.tensor([[0.0, 2.0, -2.0]])  # sigmoid: 0.5, 0.88, 0.12
    assert predictions(multi, "multilabel", 0.5).tolist() == [[1, 1, 0]]


def test_tune_threshold_picks_best_validation_f1() -> None:
    probs = torch.tensor([0.9, 0.6, 0.4, 0.3])
    targets = torch.tensor([1, 1, 1, 0])
    # t <= 0.30: all positive, F1 6/7; 0.30 < t <= 0.40: perfect; ties go to the value nearest 0.5
    assert tune_threshold(probs, targets, "binary") == (0.4, 1.0)
    # One threshold for every label: only 0.10 < t <= 0.20 separates both columns.
    probs = torch.tensor([[0.2, 0.9], [0.1, 0.1], [0.25, 0.8]])
    targets = torch.tensor([[1, 1], [0, 0], [1, 1]])
    assert tune_threshold(probs, targets, "multilabel") == (0.2, 1.0)
