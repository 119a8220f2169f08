"""The demo's identity: its composed configuration plus the code that decides its numbers.

``docs/demo.md`` records the identity its tables were measured at (``docs/generate_demo.py``);
``tests/test_demo_doc.py`` fails when the identity of the checkout differs, so a change that can
alter the demo's numbers ships with regenerated docs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from domain_distil.common.hashing import hash_object

_PACKAGE = Path(__file__).resolve().parents[1]
_ROOT = _PACKAGE.parent

# Source files whose content can change the demo's tables (relative to the checkout / site-packages).
CODE_GLOBS = (
    "domain_distil/demo/**/*.py",
    "domain_distil/demo/data/**/*.json",  # the generator's templates
    "domain_distil/modeling/**/*.py",  # objectives/ decides the loss
    "domain_distil/corpus/*.py",
    "domain_distil/classification/*.py",
    "domain_distil/analysis/*.py",
    "domain_distil/stages/*.py",
    "domain_distil/encoders.py",
    "domain_distil/common/hashing.py",
    "domain_distil/common/seeding.py",
    "domain_distil/common/workers.py",  # the thread count per job decides the arithmetic
    "domain_distil/tasks/demo.py",
    "lightning_modules/*.py",
    "datamodules/*.py",
    "callbacks/*.py",
)
# The docs hold the recorded identity; hashing them would make the identity depend on itself.
_EXCLUDED = {"domain_distil/demo/identity.py"}


def code_files(root: Path = _ROOT) -> list[Path]:
    files = {p for pattern in CODE_GLOBS for p in root.glob(pattern) if p.is_file()}
    return sorted(p for p in files if str(p.relative_to(root)) not in _EXCLUDED and "__pycache__" not in p.parts)


def demo_identity(demo_config: Mapping[str, Any], root: Path = _ROOT) -> dict[str, str]:
    """``{"config": <hash>, "code": <hash>}`` of the resolved ``demo`` config node and the code."""
    code = {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in code_files(root)}
    return {"config": hash_object(dict(demo_config))[:16], "code": hash_object(code)[:16]}
