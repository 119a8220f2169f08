"""Teacher loading: a hub name, a local folder, or a builder that produces a local folder.

``teacher.builder`` (a Hydra ``_target_`` called with ``cache_dir``) lets offline teachers such as
the demo's converted multilingual-e5-small appear as an ordinary transformers folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from domain_distil.modeling.student import check_teacher_supported

log = logging.getLogger(__name__)


@dataclass
class LoadedTeacher:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name_or_path: str
    has_mlm_head: bool


def resolve_teacher_path(teacher_cfg: DictConfig | dict, cache_dir: str | Path) -> str:
    """The hub name or local folder to load; runs ``teacher.builder`` first when there is one."""
    builder = teacher_cfg.get("builder")
    if builder:
        from hydra.utils import instantiate

        path = instantiate(builder, cache_dir=str(cache_dir))
        return str(path)
    name = teacher_cfg.get("name_or_path")
    if not name:
        raise ValueError("teacher.name_or_path is empty: give a hub name or a local model folder.")
    return str(name)


def _hub_kwargs(teacher_cfg: DictConfig | dict) -> dict[str, Any]:
    return {
        "revision": teacher_cfg.get("revision") or None,
        "local_files_only": bool(teacher_cfg.get("local_files_only", False)),
    }


def load_teacher_config(teacher_cfg: DictConfig | dict, cache_dir: str | Path):
    """Only the config: cheap, used to validate the whole run before any weights are read."""
    path = resolve_teacher_path(teacher_cfg, cache_dir)
    config = AutoConfig.from_pretrained(path, **_hub_kwargs(teacher_cfg))
    check_teacher_supported(config.model_type)
    return path, config


def load_teacher_tokenizer(teacher_cfg: DictConfig | dict, path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(path, **_hub_kwargs(teacher_cfg))


def load_teacher(
    teacher_cfg: DictConfig | dict, cache_dir: str | Path, path: str | None = None
) -> LoadedTeacher:
    """Load the teacher as a masked LM, frozen and in eval mode.

    A checkpoint without MLM-head weights (a sentence encoder, say) still loads, with a random
    head; ``has_mlm_head`` is then False so the run can refuse the soft-target loss.
    """
    path = path or resolve_teacher_path(teacher_cfg, cache_dir)
    kwargs = _hub_kwargs(teacher_cfg)
    model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, **kwargs)
    check_teacher_supported(model.config.model_type)
    head_prefixes = ("cls.", "lm_head.")
    missing_head = [k for k in info.get("missing_keys", []) if k.startswith(head_prefixes)]
    # The decoder weight is tied to the word embeddings; a missing bias or transform means no head.
    has_mlm_head = not [k for k in missing_head if not k.endswith("decoder.weight")]
    if not has_mlm_head:
        log.warning("Teacher %s has no trained MLM head (missing: %s)", path, missing_head[:4])
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model.eval().requires_grad_(False)
    return LoadedTeacher(model=model, tokenizer=tokenizer, name_or_path=path, has_mlm_head=has_mlm_head)
