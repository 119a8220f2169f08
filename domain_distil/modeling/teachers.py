"""Teacher loading: a hub name, a local folder, or a builder that produces a local folder
(``teacher.builder``, a Hydra ``_target_`` called with ``cache_dir``: the demo's converted e5).
A teacher that cannot load fails with one :class:`TeacherError` line, before any corpus work."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import (
    MODEL_MAPPING,
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from domain_distil.common.errors import UserInputError
from domain_distil.common.hashing import stat_key
from domain_distil.modeling.checks import checkpoint_has_mlm_head
from domain_distil.modeling.student import check_teacher_supported

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


class TeacherError(UserInputError):
    """The teacher (or an encoder folder) cannot be loaded; the message says which key to change."""


@dataclass
class LoadedTeacher:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    has_mlm_head: bool


def resolve_teacher_path(teacher_cfg: DictConfig | dict, cache_dir: str | Path) -> str:
    """The hub name or local folder to load; runs ``teacher.builder`` first when there is one."""
    builder = teacher_cfg.get("builder")
    if builder:
        from hydra.utils import instantiate

        return str(instantiate(builder, cache_dir=str(cache_dir)))
    name = teacher_cfg.get("name_or_path")
    if not name:
        raise TeacherError("teacher.name_or_path is empty: give a hub name or a local model folder.")
    check_model_location(str(name), "teacher.name_or_path")
    return str(name)


def looks_like_local_path(name: str) -> bool:
    """True for what can only be a path: absolute, ``./``/``../``/``~`` relative, or 2+ slashes. A hub id
    is ``name`` or ``org/name``; ``data/model`` is ambiguous and counts as a hub id unless that folder exists."""
    return name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") >= 2 or Path(name).exists()


def check_model_location(name: str, key: str) -> None:
    """A local path must be a transformers folder with a config and weights; hub ids pass through.
    ``key`` is the config key the value came from, for the error."""
    if not looks_like_local_path(name):
        return
    folder = Path(name).expanduser()
    if not folder.exists():
        raise TeacherError(f"{key}={name}: no such folder; give an existing model folder or a hub name")
    if not folder.is_dir():
        raise TeacherError(f"{key}={name}: is a file; give the model folder that holds config.json")
    if not (folder / "config.json").is_file():
        raise TeacherError(f"{key}={name}: the folder has no config.json, so it is not a transformers model "
                           "folder (save one with model.save_pretrained(folder))")
    if not any((folder / weights).is_file() for weights in WEIGHT_FILES):
        raise TeacherError(f"{key}={name}: the folder has config.json but no weights "
                           f"(expected one of {', '.join(WEIGHT_FILES)})")


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """Keep transformers' per-key load report (MISSING/UNEXPECTED table) out of the console: it lists a
    sentence encoder's absent MLM head, or the pooler an ``AutoModel`` adds to a BERT body; a missing
    teacher head is logged as one sentence instead (:func:`load_teacher`)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def pooler_free_kwargs(config: PretrainedConfig) -> dict[str, Any]:
    """``{"add_pooling_layer": False}`` where the ``AutoModel`` class takes it (BERT, RoBERTa, XLM-R): nothing
    here reads the pooler, most checkpoints (mBERT's MLM, the demo's e5) have none, and building one anyway
    draws random numbers and prints a "pooler MISSING" report on every load."""
    model_class = MODEL_MAPPING.get(type(config), None)
    takes_it = model_class is not None and "add_pooling_layer" in inspect.signature(model_class).parameters
    return {"add_pooling_layer": False} if takes_it else {}


def _hub_kwargs(teacher_cfg: DictConfig | dict) -> dict[str, Any]:
    return {
        "revision": teacher_cfg.get("revision") or None,
        "local_files_only": bool(teacher_cfg.get("local_files_only", False)),
    }


def load_teacher_config(teacher_cfg: DictConfig | dict, cache_dir: str | Path):
    """Only the config: cheap, used to validate the whole run before any weights are read."""
    path = resolve_teacher_path(teacher_cfg, cache_dir)
    try:
        config = AutoConfig.from_pretrained(path, **_hub_kwargs(teacher_cfg))
    except OSError as error:  # an unreachable or unknown hub id; local folders were checked above
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TeacherError(
            f"teacher.name_or_path={path}: not a local model folder and not loadable from the Hugging Face hub "
            f"({reason}); give an existing folder, or a hub name with network access or a warm cache"
        ) from error
    check_teacher_supported(config.model_type)
    return path, config


def load_teacher_tokenizer(teacher_cfg: DictConfig | dict, path: str) -> PreTrainedTokenizerBase:
    """The teacher's tokenizer (:func:`load_tokenizer`: once per process and folder state)."""
    return load_tokenizer(path, **_hub_kwargs(teacher_cfg))


def load_tokenizer(name_or_path: str | Path, revision: str | None = None,
                   local_files_only: bool = False) -> PreTrainedTokenizerBase:
    """A tokenizer, loaded once per process, folder state (names, sizes, mtimes) and hub settings.

    Parsing a 250k-entry ``tokenizer.json`` takes seconds, and a run asks for the same tokenizer
    several times (the corpus key, the teacher, the speed table's coverage and its timings). The
    object is shared: treat it as read-only. A local folder whose files change is loaded again.
    """
    return _cached_tokenizer(str(name_or_path), stat_key(Path(name_or_path)), revision, local_files_only)


@lru_cache(maxsize=8)
def _cached_tokenizer(path: str, state: str, revision: str | None, local_files_only: bool) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(path, revision=revision, local_files_only=local_files_only)


def load_teacher(
    teacher_cfg: DictConfig | dict, cache_dir: str | Path, path: str | None = None
) -> LoadedTeacher:
    """Load the teacher as a masked LM, frozen and in eval mode.

    A checkpoint without MLM-head weights (a sentence encoder, say) still loads, with a random
    head; ``has_mlm_head`` is then False so the run can refuse the soft-target loss.
    """
    path = path or resolve_teacher_path(teacher_cfg, cache_dir)
    with quiet_load_report():
        model = AutoModelForMaskedLM.from_pretrained(path, **_hub_kwargs(teacher_cfg))
    check_teacher_supported(model.config.model_type)
    has_mlm_head = checkpoint_has_mlm_head(path, model.config)
    if not has_mlm_head:
        log.info("Teacher %s has no trained MLM head: the hidden-state recipe (distill=hidden) needs none; the "
                 "soft-target loss (distill=sanh) uses a fitted one (teacher.mlm_head.strategy=fit)", path)
    model.eval().requires_grad_(False)
    return LoadedTeacher(model=model, tokenizer=load_teacher_tokenizer(teacher_cfg, path), has_mlm_head=has_mlm_head)
