"""Cheap checks that run before any weights are loaded or any text is tokenised."""

from __future__ import annotations

from pathlib import Path

from transformers import PretrainedConfig, PreTrainedTokenizerBase

from domain_distil.common.errors import ConfigError

_HEAD_PREFIXES = ("cls.predictions.", "lm_head.")


def checkpoint_has_mlm_head(path: str, config: PretrainedConfig) -> bool:
    """True when the checkpoint carries trained masked-LM head weights.

    Local folders are answered from the safetensors header (no tensor is read); hub names fall
    back to the ``architectures`` recorded in the config (``*ForMaskedLM`` / ``*ForPreTraining``).
    """
    folder = Path(path)
    shards = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if shards:
        from safetensors import safe_open

        for shard in shards:
            with safe_open(str(shard), framework="pt") as handle:
                if any(key.startswith(_HEAD_PREFIXES) for key in handle.keys()):
                    return True
        return False
    architectures = config.architectures or []
    return any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures)


def usable_positions(config: PretrainedConfig) -> int:
    """Longest sequence the model accepts: RoBERTa-style models reserve pad_id + 1 positions."""
    offset = (config.pad_token_id + 1) if config.model_type in {"roberta", "xlm-roberta", "camembert"} else 0
    return int(config.max_position_embeddings) - offset


def check_student_matches_teacher(
    student: PretrainedConfig, teacher: PretrainedConfig, setting: str = "student.name_or_path"
) -> None:
    """The reference's sanity check: same vocabulary, width and position table (``setting`` names
    the config key that gave the student, for the error; DistilBERT configs answer ``hidden_size`` too)."""
    problems = []
    if student.vocab_size != teacher.vocab_size:
        problems.append(f"vocab_size {student.vocab_size} != teacher's {teacher.vocab_size}")
    if student.hidden_size != teacher.hidden_size:
        problems.append(f"hidden size {student.hidden_size} != teacher's {teacher.hidden_size}")
    if student.max_position_embeddings != teacher.max_position_embeddings:
        problems.append(
            f"max_position_embeddings {student.max_position_embeddings} != teacher's {teacher.max_position_embeddings}"
        )
    if problems:
        raise ConfigError(
            f"{setting} does not fit the teacher: "
            + "; ".join(problems)
            + f". Use a student built from this teacher (leave {setting} unset) or a matching teacher."
        )


def check_same_vocabulary(student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase, setting: str) -> None:
    """A student that starts from another model must read text as the teacher does: the same token ids."""
    student_vocab, teacher_vocab = student.get_vocab(), teacher.get_vocab()
    if student_vocab != teacher_vocab:
        differing = len(set(student_vocab.items()) ^ set(teacher_vocab.items()))
        raise ConfigError(
            f"{setting}: its tokenizer differs from the teacher's ({len(student_vocab)} vs {len(teacher_vocab)} "
            f"tokens, {differing} token-id pairs not shared); start from a student of this teacher's vocabulary"
        )
