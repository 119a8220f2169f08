"""The corpus-fit report: every candidate corpus against every task and language, ranked, written
out (corpus_fit.csv / .md / .png); what is read and sampled: docs/corpus-selection.md."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.analysis.corpus_fit import (
    HIGHER_IS_BETTER,
    BottomK,
    FitRow,
    embedding_fit,
    rank_rows,
    token_fit,
    token_profile,
)
from domain_distil.analysis.render import markdown_table as render_table
from domain_distil.analysis.render import pyplot, save_png
from domain_distil.common.io import atomic_open
from domain_distil.corpus.reader import iter_documents

log = logging.getLogger(__name__)

Encoder = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@dataclass(frozen=True)
class Candidate:
    """A candidate corpus: an id and its files per language."""

    id: str
    files: Mapping[str, Sequence[Path]]


@dataclass(frozen=True)
class FitSettings:
    sample_documents: int = 512  # corpus documents embedded per candidate and language
    sample_task_texts: int = 512  # task texts embedded per language
    max_corpus_bytes: int | None = None  # token statistics read at most this much per file set (None: all)
    max_length: int = 128
    batch_size: int = 32
    k: int = 5
    seed: int = 0
    text_field: str = "text"


class _Reader:
    """Streams a candidate language's documents, stopping after ``limit`` bytes, sampling as it goes."""

    def __init__(self, files: Sequence[Path], settings: FitSettings, namespace: str) -> None:
        self.files, self.settings = files, settings
        self.sample = BottomK(settings.sample_documents, settings.seed, namespace)
        self.read_bytes, self.truncated = 0, False

    def __iter__(self) -> Iterator[str]:
        limit = self.settings.max_corpus_bytes
        for path in self.files:
            for text, n_bytes in iter_documents(Path(path), self.settings.text_field):
                if limit is not None and self.read_bytes >= limit:
                    self.truncated = True
                    return
                self.read_bytes += n_bytes
                self.sample.add(text)
                yield text


def embed_by_length(encoder: Encoder, texts: Sequence[str], settings: FitSettings) -> torch.Tensor:
    """Mean-pooled vectors of ``texts`` in their order, computed in batches of similar length.

    The encoder pass is the report's largest fixed cost, and a uniform sample in sample order pads
    most rows to the longest; sorting by length first cut a 512-document sample from 48.6 to 35.3 s
    (one torch thread). Padding is masked: the vectors differ by float rounding (3e-7), far below
    the report's 4 decimals.
    """
    from domain_distil.encoders import embed

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = embed(*encoder, [texts[i] for i in order], settings.max_length, settings.batch_size)
    return vectors[torch.tensor(order).argsort()]


def fit_report(
    candidates: Sequence[Candidate],
    task_texts: Mapping[str, Mapping[str, Sequence[str]]],
    tokenizer: PreTrainedTokenizerBase,
    settings: FitSettings,
    encoder: Encoder | None = None,
) -> list[FitRow]:
    """Rows for every (task, language, candidate); ``task_texts[task][lang]`` are the task's texts.

    A candidate without files for a language is skipped for it (logged). ``encoder`` None: token
    statistics only.
    """
    rows: list[FitRow] = []
    languages = sorted({lang for texts in task_texts.values() for lang in texts})
    task_profiles = {(task, lang): token_profile(tokenizer, texts)
                     for task, by_lang in task_texts.items() for lang, texts in by_lang.items()}
    task_vectors: dict[tuple[str, str], torch.Tensor] = {}
    if encoder is not None:
        for task, by_lang in task_texts.items():
            for lang, texts in by_lang.items():
                sample = BottomK(settings.sample_task_texts, settings.seed, f"{task}:{lang}")
                for text in texts:
                    sample.add(text)
                task_vectors[task, lang] = embed_by_length(encoder, sample.items(), settings)
    for candidate in candidates:
        for lang in languages:
            if lang not in candidate.files:
                log.warning("corpus_fit: candidate %s has no %s files; skipped for %s", candidate.id, lang, lang)
                continue
            reader = _Reader(candidate.files[lang], settings, f"{candidate.id}:{lang}")
            profile = token_profile(tokenizer, reader)
            corpus_vectors = None if encoder is None else embed_by_length(encoder, reader.sample.items(), settings)
            for task, by_lang in task_texts.items():
                if lang not in by_lang:
                    continue
                figures = token_fit(task_profiles[task, lang], profile)
                figures |= {"read_bytes": float(reader.read_bytes), "truncated": float(reader.truncated)}
                if corpus_vectors is not None:
                    figures |= embedding_fit(task_vectors[task, lang], corpus_vectors, settings.k)
                    figures["embedded_documents"] = float(len(corpus_vectors))
                rows.append(FitRow(task=task, lang=lang, candidate=candidate.id, figures=figures))
    return rows


COLUMNS = ("coverage_mass", "coverage_type", "js_divergence", "unk_share", "centroid_cosine", "mmd2",
           "knn_distance", "median_doc_tokens", "task_median_tokens", "corpus_tokens")
# Which way is better, for the figures that have a direction (unk_share and the sizes have none).
_ARROWS = {c: "↑" if c in HIGHER_IS_BETTER else "↓"
           for c in ("coverage_mass", "coverage_type", "js_divergence", "centroid_cosine", "mmd2", "knn_distance")}


def markdown_table(rows: Sequence[FitRow], rank_by: str) -> str:
    """One Markdown table, rows grouped by task and language, best fit first."""
    columns = [c for c in COLUMNS if any(c in r.figures for r in rows)]
    header = ["task", "lang", "rank", "candidate", *(f"{c} {_ARROWS.get(c, '')}".strip() for c in columns)]

    def text(value: float | None) -> str:
        if value is None:
            return ""
        return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.4f}"

    body = [[row.task, row.lang, str(row.rank), row.candidate, *(text(row.figures.get(c)) for c in columns)]
            for row in sorted(rows, key=lambda r: (r.task, r.lang, r.rank))]
    return f"Ranked by `{rank_by}` (1 = best fit).\n\n" + render_table(header, body)


def write_report(rows: Sequence[FitRow], output_dir: Path, rank_by: str, plot: bool = True) -> dict[str, Path]:
    """Rank ``rows`` and write ``corpus_fit.csv``, ``corpus_fit.md`` and (``plot``) ``corpus_fit.png``."""
    ranked = rank_rows(rows, rank_by)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {"csv": output_dir / "corpus_fit.csv", "md": output_dir / "corpus_fit.md"}
    records = [row.as_dict() for row in ranked]
    fields = list(dict.fromkeys(key for record in records for key in record))
    with atomic_open(written["csv"]) as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    with atomic_open(written["md"]) as handle:
        handle.write(markdown_table(ranked, rank_by))
    if plot and ranked:
        written["png"] = output_dir / "corpus_fit.png"
        plot_report(ranked, rank_by, written["png"])
    return written


def plot_report(rows: Sequence[FitRow], rank_by: str, path: Path) -> None:
    """One panel per (task, language): the ranking figure per candidate, best first."""
    groups: dict[tuple[str, str], list[FitRow]] = {}
    for row in sorted(rows, key=lambda r: (r.task, r.lang, r.rank)):
        groups.setdefault((row.task, row.lang), []).append(row)
    fig, axes = pyplot().subplots(1, len(groups), figsize=(3.2 * len(groups), 3.0), squeeze=False)
    for axis, ((task, lang), group) in zip(axes[0], groups.items(), strict=True):
        axis.barh([r.candidate for r in group][::-1], [r.figures[rank_by] for r in group][::-1], color="tab:blue")
        axis.set_title(f"{task} / {lang}", fontsize=9)
        axis.set_xlabel(rank_by, fontsize=8)
        axis.tick_params(labelsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
