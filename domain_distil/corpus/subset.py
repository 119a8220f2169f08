"""A corpus cut to a byte budget per language: a seeded uniform sample of its documents.

Each document gets a key from (seed, language, line number) (``sources.sampling.uniform_key``);
the documents with the smallest keys are kept until the budget is met. Budgets of one sweep
(0.3, 0.6, ... GB) therefore draw from the same ordering, so a larger budget adds documents to a
smaller one instead of drawing a different sample: data quantity is the only thing that changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from domain_distil.common.hashing import hash_files, hash_object, short
from domain_distil.common.io import MANIFEST, atomic_open, write_json
from domain_distil.common.locking import build_entry
from domain_distil.corpus.reader import iter_documents
from domain_distil.sources.sampling import BudgetFilter, KeyHistogram, budget_bytes, uniform_key

log = logging.getLogger(__name__)


def budget_subset(
    files_by_lang: dict[str, list[Path]],
    budgets_gb: dict[str, float | None],
    seed: int,
    cache_dir: str | Path,
    text_field: str = "text",
) -> Path:
    """Write (or reuse) ``<cache>/corpus_subsets/<hash>/<lang>.txt`` and return the folder.

    ``budgets_gb[lang]`` is decimal GB of UTF-8 text; None keeps the whole language; a language
    missing from ``budgets_gb`` is left out.
    """
    unknown = sorted(set(budgets_gb) - set(files_by_lang))
    if unknown:
        raise ValueError(f"budget for {unknown}, but the corpus has only {sorted(files_by_lang)}")
    key = hash_object(
        {
            "files": {lang: hash_files(files_by_lang[lang]) for lang in sorted(budgets_gb)},
            "budgets": budgets_gb,
            "seed": seed,
        }
    )
    out = Path(cache_dir) / "corpus_subsets" / short(key, 16)
    # Sweep jobs and DDP ranks may ask for the same subset at once: one builds it under the entry
    # lock, in a folder private to its process; the others wait and then reuse it.
    return build_entry(
        out,
        lambda tmp: _write_subset(tmp, files_by_lang, budgets_gb, seed, text_field),
        is_complete=lambda path: (path / MANIFEST).is_file(),
    )


def _write_subset(
    tmp: Path, files_by_lang: dict[str, list[Path]], budgets_gb: dict[str, float | None], seed: int, text_field: str
) -> None:
    """Write every language's sample and ``manifest.json`` (last: it marks the entry complete)."""
    manifest: dict[str, dict] = {}
    for lang, budget in sorted(budgets_gb.items()):
        paths = files_by_lang[lang]

        def documents(paths: list[Path] = paths, lang: str = lang):
            number = 0
            for path in paths:
                for text, _ in iter_documents(path, text_field):
                    number += 1
                    yield uniform_key(seed, f"{lang}:{number}"), text, len(text.encode("utf-8")) + 1

        histogram = KeyHistogram()
        for item_key, _, nbytes in documents():
            histogram.add(item_key, nbytes)
        target = budget_bytes(budget)
        if target is not None and target > histogram.total_bytes:
            raise ValueError(
                f"corpus language {lang!r} has {histogram.total_bytes / 1e9:.3f} GB, less than the "
                f"{budget} GB budget; lower the budget or add data"
            )
        gate = BudgetFilter(histogram.threshold(target, margin=0.0), target)
        written = 0  # documents kept
        with atomic_open(tmp / f"{lang}.txt") as handle:
            for item_key, text, nbytes in documents():
                if gate.accept(item_key, nbytes):
                    handle.write(text + "\n")
                    written += 1
        manifest[lang] = {"budget_gb": budget, "bytes": gate.written_bytes, "documents": written,
                          "available_bytes": histogram.total_bytes}
        log.info("subset %s: %d documents, %.4f GB of %.4f GB", lang, written,
                 gate.written_bytes / 1e9, histogram.total_bytes / 1e9)
    write_json(tmp / MANIFEST, {"seed": seed, "languages": manifest})
