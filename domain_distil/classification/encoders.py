"""Which encoder a classification job uses, its content hash, and loading it.

``encoder.kind`` says where the weights come from (``encoder.id`` is only the name the encoder
gets in results and reports, e.g. ``TD-DistilmBERT``):

- ``teacher``: the teacher of ``cfg.teacher`` (hub name, local folder, or a ``builder`` that
  produces a local folder), via ``modeling.teachers.resolve_teacher_path``;
- ``distilmbert``: ``distilbert-base-multilingual-cased`` from the hub (domain-general baseline);
- ``path``: any exported student folder (``encoder.name_or_path``);
- ``distilled``: the student of the current distill config, from ``tasks.distill.ensure_student``
  (distils first when it is not cached).

The hash keys the feature cache and is written to ``results.json``: a local folder hashes its
files' contents (memoised by size and mtime, so ten seeds hash a 700 MB folder once); a hub model
hashes its name and revision.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.common.hashing import hash_object, memoised_model_hash

log = logging.getLogger(__name__)

ENCODER_IDS = ("teacher", "distilmbert", "path", "distilled")


@dataclass(frozen=True)
class EncoderRef:
    id: str
    name_or_path: str
    revision: str | None
    local_files_only: bool
    hash: str

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).is_dir()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encoder_hash(name_or_path: str, revision: str | None = None, cache_dir: str | Path | None = None) -> str:
    """Content hash of a local model folder, or hash of (hub name, revision)."""
    root = Path(name_or_path)
    if not root.is_dir():
        return hash_object({"hub": name_or_path, "revision": revision})
    return memoised_model_hash(root, cache_dir)


def resolve_encoder(cfg: DictConfig) -> EncoderRef:
    """Turn ``cfg.encoder`` into a concrete model location (may distil for ``encoder=distilled``)."""
    enc = cfg.encoder
    encoder_id = str(enc.id)
    kind = str(enc.get("kind") or encoder_id)
    cache_dir = cfg.paths.cache_dir
    revision = enc.get("revision") or None
    local_files_only = bool(enc.get("local_files_only", False))
    if kind == "teacher":
        from domain_distil.modeling.teachers import resolve_teacher_path

        name_or_path = resolve_teacher_path(cfg.teacher, cache_dir)
        revision = cfg.teacher.get("revision") or None
        local_files_only = bool(cfg.teacher.get("local_files_only", False))
    elif kind == "distilled":
        # Imported here: the distillation stage is heavy and only this option needs it.
        from domain_distil.tasks.distill import ensure_student

        name_or_path = str(ensure_student(cfg))
    elif kind in ("distilmbert", "path"):
        name_or_path = enc.get("name_or_path")
        if not name_or_path:
            raise ValueError(f"encoder={kind} needs encoder.name_or_path")
        name_or_path = str(name_or_path)
        if kind == "path" and not Path(name_or_path).is_dir():
            raise FileNotFoundError(f"encoder.name_or_path={name_or_path} is not a folder (encoder=path "
                                    "expects an exported model folder with config.json)")
    else:
        raise ValueError(f"unknown encoder.kind {kind!r}; expected one of {ENCODER_IDS}")
    if Path(name_or_path).is_dir() and not (Path(name_or_path) / "config.json").is_file():
        raise FileNotFoundError(f"{name_or_path} has no config.json: not a transformers model folder")
    return EncoderRef(
        id=encoder_id,
        name_or_path=name_or_path,
        revision=revision,
        local_files_only=local_files_only,
        hash=encoder_hash(name_or_path, revision, cache_dir),
    )


def load_encoder(ref: EncoderRef) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The encoder body (``AutoModel``: an MLM checkpoint loads without its head) and its tokenizer."""
    kwargs: dict[str, Any] = {"revision": ref.revision, "local_files_only": ref.local_files_only}
    model = AutoModel.from_pretrained(ref.name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(ref.name_or_path, **kwargs)
    return model, tokenizer
