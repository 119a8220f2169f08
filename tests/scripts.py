"""The checkout as tests use it: a script (benchmarks/, docs/) loaded as a module, so tests call its
functions, and the code blocks of a docs walkthrough, so tests run them as written."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative: str) -> ModuleType:
    """``ROOT/relative`` as a module named after the file (registered in ``sys.modules``, which
    dataclasses defined in the script need)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def doc_blocks(doc: str, section: str) -> dict[str, str]:
    """The ```python and ```yaml blocks of ``## <section>`` in ``ROOT/doc``, by language (one of each)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert found, f"{doc} has no '## {section}' section"
    return dict(re.findall(r"^```(python|yaml)\n(.*?)^```", found.group(1), re.S | re.M))
