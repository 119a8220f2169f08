"""Each Distil* loss term against a value computed by hand on a fixed tiny example."""

import math

import pytest
import torch

from domain_distil.modeling.distill_losses import (
    LossWeights,
    cosine_hidden_loss,
    logit_mse_loss,
    mlm_loss,
    select_rows,
    soft_target_loss,
)
from domain_distil.modeling.masking import IGNORE_INDEX

# Two selected rows over a 3-word vocabulary.
S = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
T = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _softmax(row, temperature):
    exps = [math.exp(x / temperature) for x in row]
    return [e / sum(exps) for e in exps]


def test_soft_target_loss_matches_hand_computation():
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(S.tolist(), T.tolist()):
        p_s, p_t = _softmax(s_row, temperature), _softmax(t_row, temperature)
        expected += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    expected = expected / 2 * temperature**2  # batchmean over N=2 rows, times T^2
    assert soft_target_loss(S, T, temperature).item() == pytest.approx(expected, rel=1e-5)
    # The first row alone by hand: p_t = softmax([1, 0, 0]), p_s = softmax([.5, 0, -.5]).
    p_t = [math.e / (math.e + 2), 1 / (math.e + 2), 1 / (math.e + 2)]
    z = math.exp(0.5) + 1 + math.exp(-0.5)
    p_s = [math.exp(0.5) / z, 1 / z, math.exp(-0.5) / z]
    row0 = 4 * sum(a * math.log(a / b) for a, b in zip(p_t, p_s))
    assert soft_target_loss(S[:1], T[:1], temperature).item() == pytest.approx(row0, rel=1e-5)


def test_soft_target_loss_is_zero_for_identical_logits():
    assert soft_target_loss(T, T, 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_mlm_loss_averages_over_targets_only():
    labels = torch.tensor([0, IGNORE_INDEX])
    p = _softmax(S[0].tolist(), 1.0)
    assert mlm_loss(S, labels).item() == pytest.approx(-math.log(p[0]), rel=1e-5)
    labels = torch.tensor([2, 1])
    expected = (-math.log(_softmax(S[0].tolist(), 1.0)[2]) - math.log(_softmax(S[1].tolist(), 1.0)[1])) / 2
    assert mlm_loss(S, labels).item() == pytest.approx(expected, rel=1e-5)


def test_logit_mse_is_sum_over_rows_divided_by_n():
    expected = ((1 - 2) ** 2 + 0 + (-1) ** 2 + 0.5**2 + 0.5**2 + 0) / 2
    assert logit_mse_loss(S, T).item() == pytest.approx(expected)


def test_cosine_loss_uses_attended_tokens_only():
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # (B=1, L=3, H=2)
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [-5.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third token is padding
    expected = ((1 - 1.0) + (1 - 1 / math.sqrt(2))) / 2
    assert cosine_hidden_loss(student, teacher, mask).item() == pytest.approx(expected, rel=1e-5)


def test_row_selection_all_attended_or_only_targets():
    attention = torch.tensor([[True, True, True, False]])
    labels = torch.tensor([[IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX]])
    assert select_rows(attention, labels, restrict_to_mask=False).sum() == 3
    assert select_rows(attention, labels, restrict_to_mask=True).tolist() == [[False, True, False, False]]


def test_default_weights_are_the_reference_ones():
    weights = LossWeights()
    assert (
        weights.alpha_ce,
        weights.alpha_mlm,
        weights.alpha_cos,
        weights.alpha_mse,
        weights.temperature,
    ) == (5.0, 2.0, 1.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="every loss weight is 0"):
        LossWeights(0, 0, 0, 0).validate()
