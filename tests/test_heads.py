"""Structured self-attention head: shapes, masking, the penalty, the parameter budget."""

from __future__ import annotations

import pytest
import torch

from domain_distil.modeling.heads import SelfAttentionHead, attention_penalty


def self_attention_param_count(input_dim: int, num_classes: int, attention_dim: int, num_hops: int,
                               hidden_dim: int) -> int:
    """Closed-form parameter count of :class:`SelfAttentionHead` (the module docstring's formula)."""
    return (input_dim * attention_dim + attention_dim * num_hops + input_dim * num_hops * hidden_dim + hidden_dim
            + hidden_dim * num_classes + num_classes)


def _head(**kwargs) -> SelfAttentionHead:
    torch.manual_seed(0)
    settings = dict(input_dim=16, num_classes=5, attention_dim=8, num_hops=3, hidden_dim=6, dropout=0.0)
    settings.update(kwargs)
    return SelfAttentionHead(**settings).eval()


def test_output_shapes_and_rows_sum_to_one() -> None:
    head = _head()
    hidden = torch.randn(4, 7, 16)
    mask = torch.ones(4, 7, dtype=torch.long)
    out = head(hidden, mask)
    assert out.logits.shape == (4, 5)
    assert out.attention.shape == (4, 3, 7)
    assert out.penalty.shape == ()
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(4, 3))


def test_padded_positions_get_exactly_zero_attention() -> None:
    head = _head()
    hidden = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    out = head(hidden, mask)
    assert torch.equal(out.attention[0, :, 3:], torch.zeros(3, 3))
    assert torch.equal(out.attention[1, :, 5:], torch.zeros(3, 1))
    assert bool((out.attention[0, :, :3] > 0).all())
    # Whatever sits in the padded positions cannot change the output.
    garbage = hidden.clone()
    garbage[0, 3:] = 1e4
    garbage[1, 5:] = -1e4
    torch.testing.assert_close(head(garbage, mask).logits, out.logits)
    # Same as running the unpadded sequence alone.
    alone = head(hidden[:1, :3], torch.ones(1, 3, dtype=torch.long))
    torch.testing.assert_close(alone.logits, out.logits[:1])


def test_packed_scoring_equals_the_padded_formula_values_and_gradients() -> None:
    """The head scores only real tokens; A = softmax(W_s2 tanh(W_s1 H^T)) with -inf on padding,
    computed over the whole padded batch, must give the same attention, logits and gradients."""
    head = _head(standardize_inputs=False)
    hidden = torch.randn(3, 9, 16)
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 2 + [0] * 7])
    out = head(hidden, mask)
    out.logits.sum().backward()
    packed_grads = {name: p.grad.clone() for name, p in head.named_parameters()}
    head.zero_grad()

    scores = head.ws2(torch.tanh(head.ws1(hidden))).transpose(1, 2)
    attention = torch.softmax(scores.masked_fill(~mask.bool().unsqueeze(1), float("-inf")), dim=-1)
    logits = head.classifier(torch.tanh(head.fc((attention @ hidden).flatten(1))))
    logits.sum().backward()
    torch.testing.assert_close(out.attention, attention)
    torch.testing.assert_close(out.logits, logits)
    for name, parameter in head.named_parameters():
        torch.testing.assert_close(packed_grads[name], parameter.grad, msg=name)


def test_penalty_hand_made_examples() -> None:
    orthogonal = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # AA^T = I
    same_token = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # AA^T - I = [[0,1],[1,0]] -> 2
    uniform = torch.full((1, 2, 2), 0.5)  # AA^T - I = [[-.5,.5],[.5,-.5]] -> 4 * 0.25 = 1
    assert attention_penalty(orthogonal).item() == 0.0
    assert attention_penalty(same_token).item() == pytest.approx(2.0)
    assert attention_penalty(uniform).item() == pytest.approx(1.0)
    # Averaged over the batch, not summed.
    assert attention_penalty(torch.cat([orthogonal[:, :, :2], same_token])).item() == pytest.approx(1.0)


def test_penalty_from_the_head_with_uniform_attention() -> None:
    # W_s2 = 0 makes every hop uniform over the n real tokens: AA^T = (1/n) 11^T, so
    # P = r (1 - 1/n)^2 + r (r - 1) / n^2; padding must not count in n.
    head = _head(num_hops=3)
    with torch.no_grad():
        head.ws2.weight.zero_()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    out = head(torch.randn(1, 6, 16), mask)
    r, n = 3, 4
    assert out.penalty.item() == pytest.approx(r * (1 - 1 / n) ** 2 + r * (r - 1) / n**2)  # 2.0625


def test_default_head_has_about_600k_parameters() -> None:
    for classes, expected in ((10, 578_510), (2, 577_702)):
        head = SelfAttentionHead(input_dim=768, num_classes=classes)
        assert sum(p.numel() for p in head.parameters()) == expected
    # The closed form matches the module for another size (the spec's alternative rows).
    head = SelfAttentionHead(768, 10, attention_dim=256, num_hops=1, hidden_dim=512)
    assert sum(p.numel() for p in head.parameters()) == self_attention_param_count(768, 10, 256, 1, 512) == 595_722


def test_rejects_fully_masked_rows_and_wrong_width() -> None:
    head = _head()
    with pytest.raises(ValueError, match="at least one"):
        head(torch.randn(1, 3, 16), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="expected hidden"):
        head(torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.long))


def test_gradients_reach_every_parameter() -> None:
    head = _head(dropout=0.5).train()
    out = head(torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.long))
    (out.logits.sum() + out.penalty).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_input_standardisation_statistics_and_shift_invariance():
    import torch

    from domain_distil.modeling.heads import SelfAttentionHead

    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 8) * 0.3 + 4.0  # anisotropic: one large shared offset
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    tokens = hidden[mask.bool()]
    head = SelfAttentionHead(8, 2, attention_dim=6, num_hops=2, hidden_dim=4).eval()
    assert int(head.input_count) == 0
    head.fit_input_statistics(tokens.sum(0), (tokens**2).sum(0), tokens.size(0))
    assert int(head.input_count) == 10
    torch.testing.assert_close(head.input_mean, tokens.mean(0))
    torch.testing.assert_close(head.input_std, tokens.std(0, unbiased=False), rtol=1e-4, atol=1e-5)
    # Statistics fitted on shifted data make the head blind to the shift.
    shifted = SelfAttentionHead(8, 2, attention_dim=6, num_hops=2, hidden_dim=4).eval()
    shifted.load_state_dict(head.state_dict())
    moved = tokens + 10.0
    shifted.fit_input_statistics(moved.sum(0), (moved**2).sum(0), moved.size(0))
    torch.testing.assert_close(shifted(hidden + 10.0, mask).logits, head(hidden, mask).logits, rtol=1e-3, atol=1e-4)
    assert "input_mean" in head.state_dict() and "input_std" in head.state_dict()  # travels with the weights
