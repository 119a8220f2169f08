"""Which encoder a classification job uses, its content hash, and loading it.

``encoder.kind`` says where the weights come from (``encoder.id`` only names it in results and
reports): ``teacher`` (``cfg.teacher``: hub name, local folder or a ``builder``), ``distilmbert``
(the hub's domain-general baseline), ``path`` (an exported model folder) or ``distilled`` (the
student ``task=distill`` exported for this teacher, corpus and distill config, found through the
students' manifests, or the one ``encoder.key`` names). A distilled student's default id is
``distilled-<corpus>-<key prefix>``, so two students never share a row in a report.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil import encoders
from domain_distil.artifacts.students import (
    StudentArtifact,
    StudentQuery,
    corpus_reference,
    recipe_hash,
    recipe_identity,
    resolve_student,
    student_by_key,
    teacher_identity,
    with_parent_key,
)
from domain_distil.common.errors import ConfigError
from domain_distil.modeling.teachers import resolve_teacher_path

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


def resolve_encoder(cfg: DictConfig) -> EncoderRef:
    """Turn ``cfg.encoder`` into a concrete model location (``encoder=distilled`` reads manifests only)."""
    enc = cfg.encoder
    kind = str(enc.get("kind") or enc.id)
    encoder_id = str(enc.id) if enc.get("id") else kind
    cache_dir = cfg.paths.cache_dir
    revision = enc.get("revision") or None
    local_files_only = bool(enc.get("local_files_only", False))
    if kind == "teacher":
        name_or_path = resolve_teacher_path(cfg.teacher, cache_dir)
        revision = cfg.teacher.get("revision") or None
        local_files_only = bool(cfg.teacher.get("local_files_only", False))
    elif kind == "distilled":
        student = distilled_student(cfg)
        name_or_path = str(student.path)
        encoder_id = str(enc.id) if enc.get("id") else student.default_id
        log.info("encoder=distilled: student %s (id %s)", student.path, encoder_id)
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
    return EncoderRef(encoder_id, name_or_path, revision, local_files_only,
                      encoders.encoder_hash(name_or_path, revision, cache_dir))


def local_encoder(encoder_id: str, folder: str | Path, cache_dir: str | Path | None) -> EncoderRef:
    """A reference to an exported model folder (a student artifact, a converted teacher)."""
    folder = str(folder)
    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a transformers model folder")
    return EncoderRef(encoder_id, folder, None, True, encoders.encoder_hash(folder, None, cache_dir))


def load_encoder(ref: EncoderRef) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The resolved encoder's body (eval mode) and tokenizer, via ``domain_distil.encoders.load_encoder``."""
    return encoders.load_encoder(ref.name_or_path, revision=ref.revision, local_files_only=ref.local_files_only)


def student_query(cfg: DictConfig) -> StudentQuery:
    """What identifies the student of this config's teacher, corpus and distill groups.

    Computed from the configuration alone: the corpus is referenced, not read, and the teacher is
    identified by name (hub) or memoised content hash (folder).
    """
    teacher_path = resolve_teacher_path(cfg.teacher, cfg.paths.cache_dir)
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    match = cfg.encoder.get("match")
    # A continued student's recipe names its parent by the full key, however student.from spells it.
    student = with_parent_key(plain(cfg.student), cfg.paths.cache_dir)
    recipe_args = (plain(cfg.distill), student, plain(cfg.teacher).get("mlm_head"))
    return StudentQuery(
        teacher_identity=teacher_identity(teacher_path, cfg.teacher.get("revision"), cfg.paths.cache_dir),
        corpus_reference=corpus_reference(plain(cfg.corpus)),
        recipe_hash=recipe_hash(*recipe_args),
        effective=plain(match) if match else None,
        recipe=recipe_identity(*recipe_args),
    )


def find_distilled_student(cfg: DictConfig) -> StudentArtifact:
    """The student whose manifest matches this config's teacher, corpus and recipe (``task=distill`` made it)."""
    return resolve_student(cfg.paths.cache_dir, student_query(cfg))


def distilled_student(cfg: DictConfig) -> StudentArtifact:
    """``encoder=distilled``: the student ``encoder.key`` names, else the one this config's settings made."""
    key = cfg.encoder.get("key")
    if key is None or key == "":
        return find_distilled_student(cfg)
    if isinstance(key, float | bool):  # Hydra reads 1e5 as a number: 100000.0 is not a key prefix
        raise ConfigError(f"encoder.key={key!r} was read as a number, not a student key; quote it "
                          f"(encoder.key=\"'<key>'\") or give more characters of the key")
    return student_by_key(cfg.paths.cache_dir, str(key))
