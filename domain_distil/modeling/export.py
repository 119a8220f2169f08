"""Export a trained student as a standard transformers folder plus ``manifest.json``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.common.io import MANIFEST, write_json
from domain_distil.common.locking import build_entry

log = logging.getLogger(__name__)


def is_exported(folder: str | Path) -> bool:
    """A complete export: ``manifest.json`` is written last, so its presence means the rest is there."""
    return (Path(folder) / MANIFEST).is_file()


def export_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path, manifest: dict[str, Any]
) -> Path:
    """Write model + tokenizer + manifest into a private temp folder, then rename it into place.

    A reader therefore sees either no folder or a complete one, never a half-written export. The
    folder name is the student's content hash, so when another process (a concurrent sweep job
    with the same recipe) exported it first, its copy is kept and this one is not written.
    """
    out_dir = Path(out_dir)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / MANIFEST, manifest)

    if is_exported(out_dir):
        log.info("%s is already exported by another process; keeping it", out_dir)
        return out_dir
    return build_entry(out_dir, write, is_complete=is_exported)
