"""Each loss term against a value computed by hand on a fixed tiny example: the Distil* terms, the
layer-wise hidden-state and attention terms, and MiniLMv2 relations (the math written out here)."""

import math

import pytest
import torch

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.masking import IGNORE_INDEX
from domain_distil.modeling.objectives import Objective, select_rows
from domain_distil.modeling.objectives.attention import AttentionProbabilities, MiniLMRelations
from domain_distil.modeling.objectives.base import QKV, ModelOutputs, ModelShape, PairShape, TermInputs
from domain_distil.modeling.objectives.layerwise import LayerwiseHidden
from domain_distil.modeling.objectives.paper import (
    cosine_hidden_loss,
    logit_mse_loss,
    mlm_loss,
    soft_target_loss,
)

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


def test_default_objective_is_the_reference_one():
    weights = {term.name: term.weight for term in Objective.paper().terms}
    assert weights == {"ce": 5.0, "mlm": 2.0, "cos": 1.0, "mse": 0.0}
    assert Objective.paper().terms[0].temperature == 2.0
    with pytest.raises(ConfigError, match="every loss weight is 0"):
        Objective.from_config({"terms": {"ce": {"weight": 0, "temperature": 2.0}, "cos": {"weight": 0}}})


# -- layer-wise hidden states, attention probabilities, MiniLMv2 relations -------------------------------


def _inputs(student_hidden=(), teacher_hidden=(), student_qkv=None, teacher_qkv=None, mask=None, layer_map=None,
            student_shape=(2, 2, 1), teacher_shape=(4, 2, 1)):
    """TermInputs for a batch of one sequence (no logits); shapes are (layers, hidden, heads)."""
    return TermInputs(
        attention_mask=mask, labels=torch.full(mask.shape, IGNORE_INDEX),
        student=ModelOutputs(tuple(student_hidden), student_qkv or {}),
        teacher=ModelOutputs(tuple(teacher_hidden), teacher_qkv or {}),
        pair=PairShape(ModelShape(*student_shape), ModelShape(*teacher_shape), layer_map),
    )


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# One sequence of 3 tokens, the third is padding; hidden width 2. The student has 2 layers copied
# from teacher layers [0, 3] of 4: hidden_states tuples hold the embeddings first.
MASK = torch.tensor([[True, True, False]])
S_HIDDEN = [[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]], [[1.0, 1.0], [2.0, 0.0], [9.0, -9.0]], [[0.5, 1.0], [1.0, -1.0], [0.0, 1.0]]]
T_HIDDEN = [[[1.0, 0.0], [1.0, 1.0], [-9.0, 0.0]], [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]],
            [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0]], [[1.0, 2.0], [-1.0, 1.0], [3.0, 3.0]]]


def test_layerwise_hidden_pairs_each_student_layer_with_its_teacher_layer():
    student = [torch.tensor([s]) for s in S_HIDDEN]
    teacher = [torch.tensor([t]) for t in T_HIDDEN]
    # Pairs: embeddings (0, 0), student layer 0 <- teacher layer 0 (1, 1), student layer 1 <- teacher layer 3 (2, 4).
    pairs = [(0, 0), (1, 1), (2, 4)]
    cosine = [sum(1 - _cos(S_HIDDEN[s][i], T_HIDDEN[t][i]) for i in (0, 1)) / 2 for s, t in pairs]
    squared = [sum((a - b) ** 2 for i in (0, 1) for a, b in zip(S_HIDDEN[s][i], T_HIDDEN[t][i])) / 4 for s, t in pairs]
    assert cosine[0] == pytest.approx((0 + (1 - 2 / (2 * math.sqrt(2)))) / 2)
    for metric, per_pair in (("cosine", cosine), ("mse", squared)):
        term = LayerwiseHidden(weight=1.0, metric=metric)
        value = term(_inputs(student, teacher, mask=MASK, layer_map=(0, 3)))
        assert value.item() == pytest.approx(sum(per_pair) / 3, rel=1e-6), metric


def _probabilities(left, right, heads, attended, scale_width):
    """softmax_j(a_h(i) . b_h(j) / sqrt(scale_width)) over attended keys j, per head h and query i, by hand."""
    width = len(left[0]) // heads
    table = {}
    for h in range(heads):
        for i in attended:
            a = left[i][h * width:(h + 1) * width]
            scores = [sum(x * y for x, y in zip(a, right[j][h * width:(h + 1) * width])) / math.sqrt(scale_width)
                      for j in attended]
            exps = [math.exp(v) for v in scores]
            table[h, i] = [e / sum(exps) for e in exps]
    return table


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


# Two heads of width 2 over 3 tokens, the third one padding.
S_Q = [[1.0, 0.0, 0.5, -1.0], [0.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]]
S_K = [[1.0, 1.0, 0.0, 2.0], [-1.0, 0.5, 1.0, 0.0], [5.0, -5.0, 5.0, 5.0]]
T_Q = [[2.0, 0.0, 0.0, -1.0], [0.0, 1.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
T_K = [[1.0, 0.0, 1.0, 2.0], [0.0, 0.5, 1.0, 1.0], [-5.0, 5.0, 5.0, 5.0]]


def _qkv(query, key, value=None):
    return QKV(torch.tensor([query]), torch.tensor([key]), torch.tensor([value if value is not None else key]))


def test_attention_probability_terms_by_hand():
    attended = (0, 1)
    p_s = _probabilities(S_Q, S_K, 2, attended, scale_width=2)
    p_t = _probabilities(T_Q, T_K, 2, attended, scale_width=2)
    kl = sum(_kl(p_t[key], p_s[key]) for key in p_t) / len(p_t)  # mean over 2 heads x 2 attended queries
    mse = sum((a - b) ** 2 for key in p_t for a, b in zip(p_s[key], p_t[key])) / (len(p_t) * 2)
    # Student layers 0 and 1 <- teacher layers 0 and 3; both pairs get the same tensors here, so the
    # mean over layers equals one pair's value.
    student = {0: _qkv(S_Q, S_K), 1: _qkv(S_Q, S_K)}
    teacher = {0: _qkv(T_Q, T_K), 3: _qkv(T_Q, T_K)}
    shapes = {"student_shape": (2, 4, 2), "teacher_shape": (4, 4, 2)}
    for metric, expected in (("kl", kl), ("mse", mse)):
        term = AttentionProbabilities(weight=1.0, metric=metric)
        inputs = _inputs(student_qkv=student, teacher_qkv=teacher, mask=MASK, layer_map=(0, 3), **shapes)
        assert term(inputs).item() == pytest.approx(expected, rel=1e-5), metric
    assert kl > 0.01 and mse > 1e-4


def test_minilm_relations_by_hand_across_widths():
    """Q-Q, K-K, V-V relations over R=2 relation heads; the teacher is wider (6) than the student (4)."""
    attended = (0, 1)
    student = {"q": S_Q, "k": S_K, "v": [[0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 1.0], [4.0, 4.0, 4.0, 4.0]]}
    teacher = {"q": [row + [1.0, -1.0] for row in T_Q], "k": [row + [0.5, 0.0] for row in T_K],
               "v": [[1.0, 0.0, 0.0, 1.0, 2.0, 0.0], [0.0, 2.0, 1.0, 0.0, 0.0, 1.0], [3.0, 0.0, 0.0, 3.0, 0.0, 3.0]]}
    per_matrix = []
    for x in ("q", "k", "v"):
        rel_s = _probabilities(student[x], student[x], 2, attended, scale_width=2)  # d_r = 4 / 2
        rel_t = _probabilities(teacher[x], teacher[x], 2, attended, scale_width=3)  # d_r = 6 / 2
        per_matrix.append(sum(_kl(rel_t[key], rel_s[key]) for key in rel_t) / len(rel_t))
    expected = sum(per_matrix) / 3
    term = MiniLMRelations(weight=1.0, teacher_layer=-1, relation_heads=2)
    inputs = _inputs(student_qkv={1: _qkv(student["q"], student["k"], student["v"])},
                     teacher_qkv={3: _qkv(teacher["q"], teacher["k"], teacher["v"])}, mask=MASK,
                     student_shape=(2, 4, 2), teacher_shape=(4, 6, 3))
    assert term(inputs).item() == pytest.approx(expected, rel=1e-5)
    assert expected > 0.01


def test_padding_never_changes_the_new_terms():
    """Whatever the padded position holds, the three new terms give the same value."""
    def values(fill: float) -> list[float]:
        def padded(rows):
            return [row if i < 2 else [fill] * len(row) for i, row in enumerate(rows)]
        student = [torch.tensor([padded(s)]) for s in S_HIDDEN]
        teacher = [torch.tensor([padded(t)]) for t in T_HIDDEN]
        qkv_s = {0: _qkv(padded(S_Q), padded(S_K)), 1: _qkv(padded(S_Q), padded(S_K))}
        qkv_t = {0: _qkv(padded(T_Q), padded(T_K)), 3: _qkv(padded(T_Q), padded(T_K))}
        hidden = _inputs(student, teacher, mask=MASK, layer_map=(0, 3))
        attention = _inputs(student_qkv=qkv_s, teacher_qkv=qkv_t, mask=MASK, layer_map=(0, 3),
                            student_shape=(2, 4, 2), teacher_shape=(4, 4, 2))
        return [LayerwiseHidden(weight=1.0, metric="mse")(hidden).item(),
                AttentionProbabilities(weight=1.0, metric="kl")(attention).item(),
                MiniLMRelations(weight=1.0, teacher_layer=-1, relation_heads=2)(attention).item()]

    assert values(0.0) == pytest.approx(values(1e4), rel=1e-6)
