"""What ``task=prepare`` asks of a corpus source (docs/architecture.md, "Add a corpus source").

Hydra builds the source from ``corpus.source``: ``_target_`` names the class, the other keys are
its constructor arguments. ``task=prepare`` then calls ``build`` and writes ``manifest.json``
from what it returns, so it never knows which source it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from domain_distil.sources.writers import PreparedDir


class CorpusSource(Protocol):
    kind: str  # the manifest's ``source``

    def build(self, out: PreparedDir, languages: Sequence[str] | None, seed: int) -> dict[str, Any]:
        """Write ``out.corpus_path(lang)`` for each of ``languages`` (None: every language the input
        has) and any task files (``out.task_path(name)``), sampling with ``seed``. Return
        ``{"languages": {lang: {"corpus": writer.record(), ...}}, "tasks": {name: ...}}``, plus
        ``"inputs"`` when the inputs are not recorded per language; the manifest keeps all of it.
        """
        ...
