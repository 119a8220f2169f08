"""Build the student from the teacher (the reference's ``extract_distilbert.py``, generalised): a BERT
teacher becomes a ``DistilBertForMaskedLM`` (token-type embeddings and pooler dropped, MLM head copied);
a RoBERTa / XLM-R teacher becomes the same architecture with fewer layers, since DistilBERT cannot
express RoBERTa's position offset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
)

from domain_distil.common.errors import ConfigError, UserInputError

log = logging.getLogger(__name__)

# model_type -> how the student is built. Anything else gets a clear error up front.
DISTILBERT_TEACHERS = {"bert"}
SAME_ARCHITECTURE_TEACHERS = {"roberta", "xlm-roberta", "camembert"}
SUPPORTED_TEACHERS = DISTILBERT_TEACHERS | SAME_ARCHITECTURE_TEACHERS
# The dropout settings' names in DistilBERT's config and in BERT/RoBERTa's.
_DROPOUT_NAMES = ("dropout", "hidden_dropout_prob")
_ATTENTION_DROPOUT_NAMES = ("attention_dropout", "attention_probs_dropout_prob")


class UnsupportedTeacherError(UserInputError):
    pass


@dataclass(frozen=True)
class StudentSpec:
    """How to cut the student out of the teacher (conf/student/*.yaml)."""

    num_layers: int = 6
    layers: tuple[int, ...] | None = None
    freeze_position_embeddings: bool = True
    freeze_word_embeddings: bool = False
    fold_token_type_into_positions: bool = False
    copy_vocab_transform: bool = True
    dropout: float = 0.1
    attention_dropout: float = 0.1


def default_layer_selection(teacher_layers: int, student_layers: int) -> list[int]:
    """Spread the student evenly over the teacher, keeping the first and the last layer.

    ``round(i * (L - 1) / (n - 1))`` for ``i = 0..n-1``; for 12 -> 6 this is the reference's
    [0, 2, 4, 7, 9, 11]; for 24 -> 6, [0, 5, 9, 14, 18, 23]; for 6 -> 3, [0, 3, 5] (halves round up).
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"student.num_layers={student_layers} must be between 1 and the teacher's {teacher_layers}")
    if student_layers == 1:
        return [teacher_layers - 1]
    # Python's round() rounds halves to even; use floor(x + 0.5) so the rule is the usual one.
    return [int(i * (teacher_layers - 1) / (student_layers - 1) + 0.5) for i in range(student_layers)]


def resolve_layers(spec: StudentSpec, teacher_layers: int) -> list[int]:
    layers = (
        list(spec.layers)
        if spec.layers is not None
        else default_layer_selection(teacher_layers, spec.num_layers)
    )
    if len(layers) != spec.num_layers:
        raise ValueError(f"student.layers has {len(layers)} entries but student.num_layers={spec.num_layers}")
    bad = [i for i in layers if not 0 <= i < teacher_layers]
    if bad:
        raise ValueError(f"student.layers {bad} out of range for a teacher with {teacher_layers} layers")
    return layers


def check_teacher_supported(model_type: str) -> None:
    if model_type not in SUPPORTED_TEACHERS:
        raise UnsupportedTeacherError(
            f"Teacher model_type {model_type!r} is not supported for student construction. "
            f"Supported: {sorted(SUPPORTED_TEACHERS)} (BERT-family masked LMs). "
            "Pick another teacher (teacher=mbert, teacher=xlmr, or teacher.name_or_path=<BERT/RoBERTa MLM>)."
        )


def build_student(teacher: PreTrainedModel, spec: StudentSpec) -> PreTrainedModel:
    """Return a new masked-LM student initialised from ``teacher`` (a ``*ForMaskedLM``)."""
    model_type = teacher.config.model_type
    check_teacher_supported(model_type)
    layers = resolve_layers(spec, teacher.config.num_hidden_layers)
    if model_type in DISTILBERT_TEACHERS:
        student = _distilbert_from_bert(teacher, layers, spec)
    else:
        student = _truncated_copy(teacher, layers, spec)
    freeze_tables(student, spec)
    student.config.distil_layers = layers
    log.info("Student: %d layers copied from teacher layers %s", len(layers), layers)
    return student


def freeze_tables(student: PreTrainedModel, spec: StudentSpec) -> None:
    """Keep the embedding tables ``spec`` freezes fixed (``base_model.embeddings`` in every student class)."""
    embeddings = student.base_model.embeddings
    if spec.freeze_word_embeddings:
        # For large vocabularies on small budgets (the CPU demo: 250k x 384): the dense embedding
        # gradient and its Adam state dominate the step, and a few MB of text cannot retrain them.
        embeddings.word_embeddings.weight.requires_grad_(False)
    if spec.freeze_position_embeddings:
        # Matches the reference: 2019 DistilBERT froze this table (sinusoidal_pos_embds=True) and
        # from_pretrained then filled it with BERT's learned values.
        embeddings.position_embeddings.weight.requires_grad_(False)


def check_continued_layout(config: PretrainedConfig, spec: StudentSpec, teacher_layers: int, setting: str) -> None:
    """An exported student to distil further must have the layout the student group asks for: its
    layer count, and the teacher layers it was cut from (the layer-wise terms pair layers by them)."""
    layers = getattr(config, "distil_layers", None)
    count = int(getattr(config, "n_layers", None) or config.num_hidden_layers)
    wanted = resolve_layers(spec, teacher_layers) if spec.num_layers <= teacher_layers else None
    if count != spec.num_layers or (layers and wanted is not None and list(layers) != wanted):
        raise ConfigError(
            f"{setting} has {count} layers (copied from teacher layers {layers}), but the student group asks for "
            f"student.num_layers={spec.num_layers} student.layers={wanted}; set them to the exported student's"
        )


def load_exported_student(folder: str | Path, spec: StudentSpec) -> PreTrainedModel:
    """An exported student to distil further (``student.init=student``): its weights as saved, with the
    dropout and frozen tables of ``spec`` (its config keeps ``distil_layers``, its layer map)."""
    config = AutoConfig.from_pretrained(folder)
    for names, value in ((_DROPOUT_NAMES, spec.dropout), (_ATTENTION_DROPOUT_NAMES, spec.attention_dropout)):
        for name in names:
            if name in config.to_dict():
                setattr(config, name, value)
    student = AutoModelForMaskedLM.from_pretrained(folder, config=config)
    freeze_tables(student, spec)
    log.info("Student: continued from %s (teacher layers %s)", folder, getattr(config, "distil_layers", None))
    return student


def _copy_(target: nn.Module, source: nn.Module) -> None:
    target.load_state_dict(source.state_dict())


def distilbert_config_from_bert(tc, num_layers: int, spec: StudentSpec) -> DistilBertConfig:
    """The DistilBERT config that mirrors a BERT config with ``num_layers`` layers."""
    return DistilBertConfig(
        vocab_size=tc.vocab_size,
        max_position_embeddings=tc.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=num_layers,
        n_heads=tc.num_attention_heads,
        dim=tc.hidden_size,
        hidden_dim=tc.intermediate_size,
        dropout=spec.dropout,
        attention_dropout=spec.attention_dropout,
        activation=tc.hidden_act,
        initializer_range=tc.initializer_range,
        pad_token_id=tc.pad_token_id,
        tie_word_embeddings=True,
    )


def _distilbert_from_bert(
    teacher: PreTrainedModel, layers: list[int], spec: StudentSpec
) -> DistilBertForMaskedLM:
    tc = teacher.config
    if abs(getattr(tc, "layer_norm_eps", 1e-12) - 1e-12) > 1e-15:
        log.warning(
            "Teacher layer_norm_eps=%g but DistilBERT hard-codes 1e-12; the student starts marginally off.",
            tc.layer_norm_eps,
        )
    config = distilbert_config_from_bert(tc, len(layers), spec)
    student = DistilBertForMaskedLM(config)
    bert = teacher.bert
    emb_t, emb_s = bert.embeddings, student.distilbert.embeddings
    with torch.no_grad():
        emb_s.word_embeddings.weight.copy_(emb_t.word_embeddings.weight)
        emb_s.position_embeddings.weight.copy_(emb_t.position_embeddings.weight)
        if spec.fold_token_type_into_positions:
            # BERT computes word + position + type[0] before its LayerNorm; adding type[0] to every
            # position row reproduces the teacher's embedding output exactly for single segments.
            emb_s.position_embeddings.weight.add_(emb_t.token_type_embeddings.weight[0])
        _copy_(emb_s.LayerNorm, emb_t.LayerNorm)
        for i, t_index in enumerate(layers):
            t_layer, s_layer = bert.encoder.layer[t_index], student.distilbert.transformer.layer[i]
            _copy_(s_layer.attention.q_lin, t_layer.attention.self.query)
            _copy_(s_layer.attention.k_lin, t_layer.attention.self.key)
            _copy_(s_layer.attention.v_lin, t_layer.attention.self.value)
            _copy_(s_layer.attention.out_lin, t_layer.attention.output.dense)
            _copy_(s_layer.sa_layer_norm, t_layer.attention.output.LayerNorm)
            _copy_(s_layer.ffn.lin1, t_layer.intermediate.dense)
            _copy_(s_layer.ffn.lin2, t_layer.output.dense)
            _copy_(s_layer.output_layer_norm, t_layer.output.LayerNorm)
        head = teacher.cls.predictions
        # The decoder weight is tied to the word embeddings on both sides; only the bias is separate.
        student.vocab_projector.bias.copy_(head.bias)
        if spec.copy_vocab_transform:
            _copy_(student.vocab_transform, head.transform.dense)
            _copy_(student.vocab_layer_norm, head.transform.LayerNorm)
    return student


def _truncated_copy(teacher: PreTrainedModel, layers: list[int], spec: StudentSpec) -> PreTrainedModel:
    """Same class as the teacher with ``len(layers)`` layers; layer i <- teacher layer layers[i]."""
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = len(layers)
    config.hidden_dropout_prob = spec.dropout
    config.attention_probs_dropout_prob = spec.attention_dropout
    student = teacher.__class__(config)
    prefix = f"{teacher.base_model_prefix}.encoder.layer."
    remap = {str(t): str(s) for s, t in enumerate(layers)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith(prefix):
            index, rest = name[len(prefix) :].split(".", 1)
            if index not in remap:
                continue
            name = f"{prefix}{remap[index]}.{rest}"
        elif not spec.copy_vocab_transform and name.startswith(("lm_head.dense.", "lm_head.layer_norm.")):
            continue  # RoBERTa's head transform: left at its fresh initialisation, like DistilBERT's
        state[name] = tensor
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("decoder.weight")]  # tied to the embeddings
    if unexpected or (missing and spec.copy_vocab_transform):
        raise RuntimeError(f"Student construction mismatch: missing={missing} unexpected={unexpected}")
    return student
