"""Dependencies point down: entry → tasks → stages/serving → Lightning modules, data modules and
callbacks → modeling, corpus, sources, classification, analysis, conversion, encoders, artifacts,
demo → common. An import that points up (a lower layer importing a higher one) fails this test,
wherever it sits in the file (top level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RANKS = {
    "domain_distil.common": 0,
    **{f"domain_distil.{name}": 1 for name in (
        "modeling", "corpus", "sources", "classification", "analysis", "conversion", "encoders", "artifacts", "demo",
    )},
    "lightning_modules": 2,
    "datamodules": 2,
    "callbacks": 2,
    "domain_distil.stages": 3,
    "domain_distil.serving": 3,
    "domain_distil.tasks": 4,
    "domain_distil.cli": 5,
}


def rank_of(module: str) -> int | None:
    """The rank of a project module (the longest matching prefix), None for third-party modules."""
    best = None
    for prefix, rank in RANKS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    roots = ["domain_distil", "lightning_modules", "datamodules", "callbacks"]
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from domain_distil import encoders` imports the sub-module domain_distil.encoders.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            found.append((node.lineno, node.module))
    return found


def upward_imports() -> list[str]:
    problems = []
    for path in project_files():
        own = rank_of(module_name(path))
        if own is None:
            continue
        for line, target in imported_modules(path):
            rank = rank_of(target)
            if rank is not None and rank > own:
                problems.append(f"{path.relative_to(ROOT)}:{line} (rank {own}) imports {target} (rank {rank})")
    return problems


def test_every_project_module_has_a_rank():
    unranked = [module_name(p) for p in project_files() if rank_of(module_name(p)) is None]
    assert unranked in ([], ["domain_distil"]), f"modules outside the layering: {unranked}"


def test_no_import_points_up():
    problems = upward_imports()
    assert not problems, "imports that point up:\n" + "\n".join(problems)


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The test itself can fail: a common module that imports a task is reported."""
    fake = ROOT / "domain_distil" / "common" / "_upward_probe.py"
    fake.write_text("from domain_distil.tasks import distill\n")
    try:
        problems = upward_imports()
    finally:
        fake.unlink()
    assert any("_upward_probe.py:1" in p and "domain_distil.tasks" in p for p in problems)


@pytest.mark.parametrize("module, rank", [("domain_distil.encoders", 1), ("domain_distil.stages.distil", 3),
                                          ("lightning_modules.distillation", 2), ("torch", None)])
def test_rank_of(module, rank):
    assert rank_of(module) == rank
