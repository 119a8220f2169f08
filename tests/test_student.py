"""Student construction: layer rule, copied weights, dropped parts, frozen positions, sizes."""

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    DistilBertModel,
    RobertaConfig,
    RobertaForMaskedLM,
)

from domain_distil.modeling.student import (
    StudentSpec,
    UnsupportedTeacherError,
    build_student,
    check_teacher_supported,
    default_layer_selection,
    distilbert_config_from_bert,
)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertForMaskedLM(config).eval()


def test_default_layer_rule():
    assert default_layer_selection(12, 6) == [0, 2, 4, 7, 9, 11]  # the reference's choice
    assert default_layer_selection(24, 6) == [0, 5, 9, 14, 18, 23]
    assert default_layer_selection(6, 3) == [0, 3, 5]
    assert default_layer_selection(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="between 1 and"):
        default_layer_selection(4, 6)


def test_student_layers_equal_selected_teacher_layers(teacher):
    student = build_student(teacher, StudentSpec())
    layers = [0, 2, 4, 7, 9, 11]
    assert student.config.distil_layers == layers
    pairs = [
        ("attention.q_lin", "attention.self.query"),
        ("attention.k_lin", "attention.self.key"),
        ("attention.v_lin", "attention.self.value"),
        ("attention.out_lin", "attention.output.dense"),
        ("sa_layer_norm", "attention.output.LayerNorm"),
        ("ffn.lin1", "intermediate.dense"),
        ("ffn.lin2", "output.dense"),
        ("output_layer_norm", "output.LayerNorm"),
    ]
    for i, t_index in enumerate(layers):
        s_layer, t_layer = student.distilbert.transformer.layer[i], teacher.bert.encoder.layer[t_index]
        for s_name, t_name in pairs:
            s_mod, t_mod = s_layer.get_submodule(s_name), t_layer.get_submodule(t_name)
            assert torch.equal(s_mod.weight, t_mod.weight) and torch.equal(s_mod.bias, t_mod.bias)


def test_embeddings_head_copied_token_types_dropped_positions_frozen(teacher):
    student = build_student(teacher, StudentSpec())
    emb = student.distilbert.embeddings
    assert torch.equal(emb.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(emb.position_embeddings.weight, teacher.bert.embeddings.position_embeddings.weight)
    assert not emb.position_embeddings.weight.requires_grad
    assert not hasattr(emb, "token_type_embeddings")
    assert not any("pooler" in name for name, _ in student.named_parameters())
    head = teacher.cls.predictions
    assert torch.equal(student.vocab_transform.weight, head.transform.dense.weight)
    assert torch.equal(student.vocab_layer_norm.weight, head.transform.LayerNorm.weight)
    assert torch.equal(student.vocab_projector.bias, head.bias)
    assert student.vocab_projector.weight is emb.word_embeddings.weight  # tied, as in the teacher


def test_folding_token_types_reproduces_teacher_embeddings(teacher):
    ids = torch.randint(0, 120, (2, 10))
    student = build_student(teacher, StudentSpec(fold_token_type_into_positions=True)).eval()
    with torch.no_grad():
        expected = teacher.bert.embeddings(input_ids=ids)
        got = student.distilbert.embeddings(ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_position_embeddings_trainable_when_asked(teacher):
    student = build_student(teacher, StudentSpec(freeze_position_embeddings=False))
    assert student.distilbert.embeddings.position_embeddings.weight.requires_grad


def test_roberta_teacher_gives_truncated_roberta(teacher):
    config = RobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        pad_token_id=1,
    )
    roberta = RobertaForMaskedLM(config).eval()
    student = build_student(roberta, StudentSpec(num_layers=2)).eval()
    assert student.config.num_hidden_layers == 2 and student.config.distil_layers == [0, 3]
    assert torch.equal(
        student.roberta.encoder.layer[1].output.dense.weight,
        roberta.roberta.encoder.layer[3].output.dense.weight,
    )
    assert torch.equal(student.lm_head.dense.weight, roberta.lm_head.dense.weight)
    assert not student.roberta.embeddings.position_embeddings.weight.requires_grad


def test_unsupported_teacher_is_refused_up_front():
    with pytest.raises(UnsupportedTeacherError, match="gpt2.*not supported"):
        check_teacher_supported("gpt2")


def test_mbert_sized_parameter_counts():
    """The spec's counts, on the meta device (no memory, no download)."""
    config = BertConfig(vocab_size=119547)  # bert-base-multilingual-cased dimensions
    with torch.device("meta"):
        teacher_body = BertModel(config, add_pooling_layer=True)
        student_body = DistilBertModel(distilbert_config_from_bert(config, 6, StudentSpec()))
    assert sum(p.numel() for p in teacher_body.parameters()) == 177_853_440
    assert sum(p.numel() for p in student_body.parameters()) == 134_734_080
