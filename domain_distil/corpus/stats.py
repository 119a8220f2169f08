"""What happened to one language's text on its way into the shards: kept, dropped and why, warnings.

This is ``<lang>/stats.json`` of a built corpus, which the shards' ``meta.json`` and so the
distillation manifest (``corpus_stats``) copy. Units: ``documents`` are what the reader yields
(lines, or paragraphs with ``document_separator=blank_line``); ``sequences`` and the ``dropped_*``
counts are chunks of at most ``max_seq_length`` tokens; ``tokens`` are teacher-tokenizer ids as
stored ([CLS]/[SEP] included).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Documents longer than this many tokens share the last bin of the length histogram; only the
# median is read from it, and a median that high never triggers the "very short" warning.
_LENGTH_BINS = 4096
# "Most documents": more than this share produced no sequence at all.
MOSTLY_DROPPED = 0.5
# Warn when min_seq_length alone drops more than this share of the documents: one chat message per
# line lost 47.5% of its lines at min_seq_length=12 while no warning fired at MOSTLY_DROPPED.
SHORT_DROPPED = 0.2


@dataclass
class LanguageStats:
    documents: int = 0
    documents_without_sequence: int = 0  # every chunk too short or mostly [UNK]
    documents_too_short: int = 0  # every chunk shorter than min_seq_length
    document_tokens: int = 0  # tokens of every document with [CLS]/[SEP], before chunking and filters
    sequences: int = 0
    tokens: int = 0
    bytes: int = 0  # uncompressed input bytes read, empty lines included
    empty_lines: int = 0  # skipped in line mode; document separators in blank_line mode
    dropped_short: int = 0
    dropped_short_tokens: int = 0  # tokens in the chunks shorter than min_seq_length
    dropped_unk: int = 0
    dropped_over_budget: int = 0  # chunks that passed the filters but no longer fitted the budget
    budget_tokens: int | None = None
    budget_reached: bool = False
    stopped_at: str | None = None  # "file:line" of the document that filled the budget; the rest is not read
    median_document_tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    _lengths: np.ndarray = field(default_factory=lambda: np.zeros(_LENGTH_BINS + 1, dtype=np.int64), repr=False)

    def add_document_length(self, n_tokens: int) -> None:
        self._lengths[min(n_tokens, _LENGTH_BINS)] += 1
        self.document_tokens += n_tokens

    def finish(self, lang: str, min_seq_length: int, separator: str) -> None:
        """Compute the median and the warnings (each also logged)."""
        if self.documents:
            cumulative = np.cumsum(self._lengths)
            self.median_document_tokens = int(np.searchsorted(cumulative, (self.documents + 1) // 2))
        hint = (
            "If your documents span several lines with an empty line between documents, set "
            "corpus.document_separator=blank_line; otherwise lower corpus.min_seq_length."
            if separator == "line"
            else "Check that documents are separated by empty lines, or lower corpus.min_seq_length."
        )
        if self.documents and self.documents_too_short > SHORT_DROPPED * self.documents:
            self.warnings.append(
                f"{lang}: {short_drop_summary(vars(self), min_seq_length, document_unit(separator))}"
                f", each under {min_seq_length} tokens with [CLS]/[SEP]. To keep short messages, lower "
                "corpus.min_seq_length (e.g. 4) or put the messages of one conversation on one line "
                "(docs/own-data.md)."
                + (" Documents that span several lines with an empty line between them need "
                   "corpus.document_separator=blank_line." if separator == "line" else ""))
        elif self.documents and self.documents_without_sequence > MOSTLY_DROPPED * self.documents:
            share = self.documents_without_sequence / self.documents
            self.warnings.append(
                f"{lang}: {share:.0%} of its {self.documents} documents produced no training sequence "
                f"(shorter than {min_seq_length} tokens or mostly [UNK]). {hint}")
        elif self.documents and self.median_document_tokens < 2 * min_seq_length:
            self.warnings.append(
                f"{lang}: documents are very short (median {self.median_document_tokens} tokens with "
                f"[CLS]/[SEP], under {2 * min_seq_length}). Fine for chat messages; {hint}")
        if self.budget_tokens is not None and not self.budget_reached:
            self.warnings.append(
                f"{lang}: the budget of {self.budget_tokens} tokens was not reached: the language has only "
                f"{self.tokens} tokens after filtering. Add text or lower corpus.budget_tokens, or "
                "equal-budget comparisons are not equal.")
        for warning in self.warnings:
            log.warning("%s", warning)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def short_drop_summary(stats: Mapping[str, Any], min_seq_length: int, unit: str = "documents") -> str:
    """What ``min_seq_length`` dropped (a ``LanguageStats`` or its ``stats.json``), in documents and
    tokens: "min_seq_length=12 dropped 475 of 1000 lines (47.5%) and 3100 of 15000 tokens (20.7%)"."""
    short, documents = stats["documents_too_short"], stats["documents"]
    tokens, total = stats["dropped_short_tokens"], stats["document_tokens"]
    return (f"min_seq_length={min_seq_length} dropped {short} of {documents} {unit} ({_share(short, documents)}) "
            f"and {tokens} of {total} tokens ({_share(tokens, total)})")


def document_unit(separator: str) -> str:
    """What a document is called in messages: a line (``document_separator=line``) or a document."""
    return "lines" if separator == "line" else "documents"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0.0%"
