"""Dependencies point down, one package at a time. Each package (a ``domain_distil.X`` subpackage or
module, and the top-level ``lightning_modules``, ``datamodules``, ``callbacks``) has its own rank, and
a module may import only its own package or one of a lower rank, wherever the import sits (top level
or inside a function):

    common < sources < corpus < modeling < encoders < artifacts < classification < conversion
    < analysis < demo < lightning_modules < datamodules < callbacks < serving < stages < tasks < cli

The order is the code's: sources read dumps with common's helpers; corpus reads and shards text;
modeling (the student, vocabulary trimming) reads corpus files; encoders loads what modeling
describes; artifacts find students by their recipe; classification resolves encoders and artifacts;
conversion quantises the classifiers' encoders; analysis measures all of these; the Lightning
modules, data modules and callbacks train on them; serving bundles one encoder and its heads; stages
turn artifacts into artifacts; a task turns its config into a stage call; the CLI dispatches tasks.

Besides the ranks: the package import graph has no cycle (the failure names the cycle), and no task
module imports another task (what two tasks share belongs in ``domain_distil/stages``). The
self-tests at the bottom feed the checks synthetic modules, so they never write into the source tree.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("lightning_modules", "datamodules", "callbacks")
ORDER = (
    "domain_distil.common", "domain_distil.sources", "domain_distil.corpus", "domain_distil.modeling",
    "domain_distil.encoders", "domain_distil.artifacts", "domain_distil.classification", "domain_distil.conversion",
    "domain_distil.analysis", "domain_distil.demo", *TOP_LEVEL, "domain_distil.serving", "domain_distil.stages",
    "domain_distil.tasks", "domain_distil.cli",
)
RANKS = {package: rank for rank, package in enumerate(ORDER)}
TASKS = "domain_distil.tasks"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the imported module (or name: ``from a import b`` gives both a and a.b)


def package_of(module: str) -> str | None:
    """The package node of a project module, None for the root ``domain_distil`` and third-party modules."""
    parts = module.split(".")
    if parts[0] in TOP_LEVEL:
        return parts[0]
    if parts[0] == "domain_distil" and len(parts) > 1:
        return f"domain_distil.{parts[1]}"
    return None


def rank_of(module: str) -> int | None:
    return RANKS.get(package_of(module) or "")


def imports_of(module: str, source: str, is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (relative ones resolved against ``module``), at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(module, node.lineno, base))
            # `from domain_distil import encoders` imports the sub-module domain_distil.encoders.
            found += [Import(module, node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def upward_imports(imports: Iterable[Import]) -> list[str]:
    problems = []
    for imp in imports:
        own, rank = rank_of(imp.module), rank_of(imp.target)
        if own is not None and rank is not None and rank > own:
            problems.append(f"{imp.module}:{imp.line} ({package_of(imp.module)}, rank {own}) imports "
                            f"{imp.target} ({package_of(imp.target)}, rank {rank})")
    return problems


def package_graph(imports: Iterable[Import]) -> dict[str, dict[str, str]]:
    """{package: {imported package: the first import that makes the edge, as module:line}}."""
    graph: dict[str, dict[str, str]] = {}
    for imp in imports:
        source, target = package_of(imp.module), package_of(imp.target)
        if source and target and source != target:
            graph.setdefault(source, {}).setdefault(target, f"{imp.module}:{imp.line}")
    return graph


def find_cycle(graph: Mapping[str, Mapping[str, str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same node, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def describe_cycle(cycle: list[str], graph: Mapping[str, Mapping[str, str]]) -> str:
    return "\n".join(f"  {a} -> {b} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:]))


def task_to_task_imports(imports: Iterable[Import], modules: Iterable[str]) -> list[str]:
    """Imports of one task module by another (``domain_distil.tasks.<a>`` of ``domain_distil.tasks.<b>``)."""
    tasks = {m for m in modules if m.startswith(f"{TASKS}.")}
    return [f"{imp.module}:{imp.line} imports {imp.target}" for imp in imports
            if imp.module in tasks and imp.target in tasks and imp.target != imp.module]


@cache
def project() -> tuple[tuple[str, ...], tuple[Import, ...]]:
    """(every project module, every import in them), parsed once."""
    modules, imports = [], []
    for root in ("domain_distil", *TOP_LEVEL):
        for path in sorted((ROOT / root).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            module = ".".join(parts[:-1] if is_package else parts)
            modules.append(module)
            imports += imports_of(module, path.read_text(encoding="utf-8"), is_package)
    return tuple(modules), tuple(imports)


def test_every_project_package_has_a_rank():
    modules, _ = project()
    unranked = sorted({package_of(m) or m for m in modules if rank_of(m) is None})
    assert unranked in ([], ["domain_distil"]), f"packages outside the order (add them to ORDER): {unranked}"


def test_no_import_points_up():
    problems = upward_imports(project()[1])
    assert not problems, "imports that point up:\n" + "\n".join(problems)


def test_the_package_graph_has_no_cycle():
    graph = package_graph(project()[1])
    cycle = find_cycle(graph)
    assert cycle is None, "packages that import each other:\n" + describe_cycle(cycle, graph)


def test_no_task_imports_another_task():
    modules, imports = project()
    problems = task_to_task_imports(imports, modules)
    assert not problems, "tasks importing tasks (move the shared code to domain_distil/stages):\n" + "\n".join(problems)


# The checks can fail: synthetic modules, nothing written to the source tree.

SYNTHETIC = {
    "domain_distil.common.probe": "def f():\n    from domain_distil.tasks import distill\n",
    "domain_distil.corpus.probe": "from domain_distil.analysis import stats\n",
    "domain_distil.analysis.probe": "import domain_distil.corpus.reader\n",
    "domain_distil.tasks.a": "from domain_distil.tasks.b import run\n",
    "domain_distil.tasks.b": "from domain_distil.tasks import a\nfrom domain_distil.tasks import available_tasks\n",
    "domain_distil.tasks.c": "from domain_distil.stages.classify import classify\n",
}


def _synthetic() -> list[Import]:
    return [imp for module, source in SYNTHETIC.items() for imp in imports_of(module, source)]


def test_the_check_catches_an_upward_import_inside_a_function():
    problems = upward_imports(_synthetic())
    assert any(p.startswith("domain_distil.common.probe:2") and "domain_distil.tasks.distill" in p for p in problems)
    assert any(p.startswith("domain_distil.corpus.probe:1") for p in problems)
    assert not any(p.startswith(("domain_distil.analysis.probe", "domain_distil.tasks.c")) for p in problems)


def test_the_check_reports_a_cycle_with_its_path():
    graph = package_graph(_synthetic())
    cycle = find_cycle(graph)
    assert cycle == ["domain_distil.analysis", "domain_distil.corpus", "domain_distil.analysis"]
    edge = "domain_distil.corpus -> domain_distil.analysis (domain_distil.corpus.probe:1)"
    assert edge in describe_cycle(cycle, graph)
    assert find_cycle({"a": {"b": "x"}, "b": {"c": "y"}, "c": {}}) is None
    assert find_cycle({"a": {"b": "x"}, "b": {"c": "y"}, "c": {"a": "z"}}) == ["a", "b", "c", "a"]


def test_the_check_catches_a_task_importing_a_task():
    problems = task_to_task_imports(_synthetic(), SYNTHETIC)
    assert problems == ["domain_distil.tasks.a:1 imports domain_distil.tasks.b",
                        "domain_distil.tasks.b:1 imports domain_distil.tasks.a"]


def test_relative_imports_are_resolved():
    source = "from ..stages import distil\nfrom . import y\n"
    found = {imp.target for imp in imports_of("domain_distil.tasks.x", source)}
    assert {"domain_distil.stages.distil", "domain_distil.tasks.y"} <= found
    found = {imp.target for imp in imports_of("domain_distil.stages", "from .distil import plan\n", is_package=True)}
    assert "domain_distil.stages.distil" in found


@pytest.mark.parametrize("module, package", [
    ("domain_distil.encoders", "domain_distil.encoders"), ("domain_distil.stages.distil", "domain_distil.stages"),
    ("lightning_modules.distillation", "lightning_modules"), ("domain_distil", None), ("torch", None),
])
def test_package_of(module, package):
    assert package_of(module) == package
    assert (rank_of(module) is None) == (package is None)


def test_ranks_are_a_total_order():
    assert len(set(RANKS.values())) == len(ORDER) == len(set(ORDER))
    assert RANKS["domain_distil.common"] == 0 and RANKS["domain_distil.cli"] == len(ORDER) - 1
