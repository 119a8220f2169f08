"""Where the Hydra configs are: inside the installed package, or ``conf/`` beside it in a checkout.

A wheel ships ``conf/`` as ``domain_distil/conf`` (``pyproject.toml`` maps the folder), so
``pip install .`` followed by ``domain-distil task=...`` from any directory finds the same configs
that ``python run.py`` reads in the checkout.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


@cache
def config_dir() -> Path:
    """The folder holding ``config.yaml``: the packaged copy first, else the checkout's ``conf/``."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"No Hydra configs found: neither {_PACKAGE_DIR / 'conf'} (installed package) nor "
        f"{_PACKAGE_DIR.parent / 'conf'} (checkout) holds config.yaml; reinstall domain-distil."
    )
