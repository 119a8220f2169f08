"""Tokenise a corpus once, in a streaming pass, into memory-mapped int32 shards plus token counts.

Layout of a built corpus (``<cache_dir>/corpus/<hash>/``)::

    meta.json                 settings, tokenizer, per-language statistics (corpus.stats.LanguageStats)
    token_counts.npy          int64 (vocab_size,), every stored id counted ([CLS]/[SEP] included)
    <lang>/shard-00000.bin    raw int32 token ids, sequences back to back
    <lang>/index.npy          int64 (n, 3): shard number, offset (tokens), length
    <lang>/stats.json         documents, kept sequences and tokens, drops with their reasons, warnings

One process builds under the entry's lock in ``.<hash>.partial/``, one finished language at a time
(a killed build resumes at the next one), and renames it to ``<hash>/`` once ``meta.json`` is in:
readers never see a half-built corpus. ids are int32 because mBERT's vocabulary (119,547) does not
fit in uint16 (the 2019 script's silent corruption, issue #2825).

A token budget (``ShardSettings.budget_tokens``) keeps, per language, the documents in file order
until the next chunk would exceed it: the kept tokens are at most the budget and less than one
chunk under it, so a bigger budget's shards start with a smaller one's.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from transformers import PreTrainedTokenizerBase

from domain_distil.common.hashing import hash_files, hash_object
from domain_distil.common.io import read_json, write_json
from domain_distil.common.locking import entry_lock, private_temp_path
from domain_distil.common.progress import progress
from domain_distil.corpus.encoding import Batch, document_batches, encoded_batches
from domain_distil.corpus.reader import CorpusError, check_reading, uncompressed_size
from domain_distil.corpus.stats import LanguageStats, document_unit, short_drop_summary

log = logging.getLogger(__name__)

TOKEN_DTYPE = np.int32
META = "meta.json"  # written last: its presence marks a published corpus


@dataclass(frozen=True)
class ShardSettings:
    max_seq_length: int = 512
    min_seq_length: int = 12
    max_unk_ratio: float = 0.5
    shard_tokens: int = 50_000_000
    text_field: str = "text"
    # Teacher tokens to keep per language after chunking and filtering (what the shards hold):
    # one number for every language, {lang: tokens or None}, or None for no budget.
    budget_tokens: int | Mapping[str, int | None] | None = None
    document_separator: str = "line"  # "line" | "blank_line" (reader.read_documents)
    encoding_errors: str = "strict"  # "strict" | "replace"

    def __post_init__(self) -> None:
        check_reading(self.document_separator, self.encoding_errors)
        budget = self.budget_tokens
        if isinstance(budget, Mapping):
            budget = dict(sorted((str(lang), _budget_value(value, f"corpus.budget_tokens.{lang}"))
                                 for lang, value in budget.items()))
        else:
            budget = _budget_value(budget, "corpus.budget_tokens")
        object.__setattr__(self, "budget_tokens", budget)  # a plain dict/int, whatever config object came in

    def budget_for(self, lang: str) -> int | None:
        """The token budget of ``lang`` (a language missing from a budget mapping has none)."""
        if isinstance(self.budget_tokens, dict):
            return self.budget_tokens.get(lang)
        return self.budget_tokens

    def check_languages(self, languages: Iterable[str]) -> None:
        """A budget for a language the corpus does not have is a typo: say so before any work."""
        if isinstance(self.budget_tokens, dict):
            unknown = sorted(set(self.budget_tokens) - set(languages))
            if unknown:
                raise CorpusError(f"corpus.budget_tokens names {unknown}, but the corpus languages are "
                                  f"{sorted(languages)}; remove them or fix the language codes")


def _budget_value(value: object, name: str) -> int | None:
    if value is None:
        return None
    whole = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value == int(value)
    if not whole or value < 1:
        raise CorpusError(f"{name} must be a positive whole number of tokens or null, got {value!r}")
    return int(value)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer: class, vocabulary and special tokens (not its file paths); memoised per
    tokenizer object, as hashing a 250k vocabulary takes a second."""
    size = len(tokenizer)  # a token added since changes the size: fingerprint again
    known = _FINGERPRINTS.get(tokenizer)
    if known is None or known[0] != size:
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        fingerprint = hash_object({"class": type(tokenizer).__name__, "vocab": vocab,
                                   "special": tokenizer.all_special_tokens,
                                   "lower": getattr(tokenizer, "do_lower_case", None)})
        known = _FINGERPRINTS[tokenizer] = (size, fingerprint)
    return known[1]


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def corpus_key(files_by_lang: dict[str, list[Path]], tokenizer: PreTrainedTokenizerBase, settings: ShardSettings) -> str:
    # The budget enters resolved per language, so `5000` and `{eng: 5000, esp: 5000}` share a cache.
    resolved = {**asdict(settings), "budget_tokens": {lang: settings.budget_for(lang) for lang in sorted(files_by_lang)}}
    return hash_object({"files": {lang: hash_files(paths) for lang, paths in sorted(files_by_lang.items())},
                        "tokenizer": tokenizer_fingerprint(tokenizer), "settings": resolved})


class Chunks(NamedTuple):
    """One document's chunks after filtering, and what the filters dropped."""

    kept: list[list[int]]
    short: int  # chunks shorter than min_seq_length
    unk: int  # chunks mostly [UNK]
    short_tokens: int  # tokens in the short chunks ([CLS]/[SEP] included)


def split_and_filter(ids: list[int], cls_id: int, sep_id: int, unk_id: int | None, settings: ShardSettings) -> Chunks:
    """Wrap one document in [CLS] ... [SEP], cut it into <= max_seq_length chunks, drop bad ones.

    Long sequences are cut into consecutive pieces of ``max_seq_length - 2`` over the full sequence,
    and each piece gets [CLS]/[SEP] added unless it already starts/ends with them (the reference's order).
    """
    seq = [cls_id, *ids, sep_id]
    max_len = settings.max_seq_length
    if len(seq) <= max_len:
        pieces = [seq]
    else:
        step = max_len - 2
        pieces = []
        for start in range(0, len(seq), step):
            piece = seq[start : start + step]
            if piece[0] != cls_id:
                piece = [cls_id, *piece]
            if piece[-1] != sep_id:
                piece = [*piece, sep_id]
            pieces.append(piece)
    kept, short, unk, short_tokens = [], 0, 0, 0
    for piece in pieces:
        if len(piece) < settings.min_seq_length:
            short += 1
            short_tokens += len(piece)
        elif unk_id is not None and piece.count(unk_id) / len(piece) >= settings.max_unk_ratio:
            unk += 1
        else:
            kept.append(piece)
    return Chunks(kept, short, unk, short_tokens)


class _ShardWriter:
    """Appends sequences to rolling int32 shard files and records where each one went."""

    def __init__(self, folder: Path, shard_tokens: int) -> None:
        self.folder, self.shard_tokens = folder, shard_tokens
        self.index: list[tuple[int, int, int]] = []
        self.shard, self.offset, self.handle = 0, 0, open(folder / "shard-00000.bin", "wb")

    def add(self, seq: list[int]) -> None:
        if self.offset and self.offset + len(seq) > self.shard_tokens:
            self.handle.close()
            self.shard, self.offset = self.shard + 1, 0
            self.handle = open(self.folder / f"shard-{self.shard:05d}.bin", "wb")
        self.handle.write(np.asarray(seq, dtype=TOKEN_DTYPE).tobytes())
        self.index.append((self.shard, self.offset, len(seq)))
        self.offset += len(seq)

    def close(self) -> None:
        self.handle.close()
        np.save(self.folder / "index.npy", np.asarray(self.index, dtype=np.int64).reshape(-1, 3))


def _build_language(lang: str, paths: list[Path], tokenizer: PreTrainedTokenizerBase, settings: ShardSettings,
                    target: Path, num_workers: int) -> None:
    """Tokenise one language into ``target`` (written in a private temp folder, then renamed)."""
    tmp = private_temp_path(target)
    tmp.mkdir(parents=True)
    try:
        counts, stats = _tokenise_language(lang, paths, tokenizer, settings, tmp, num_workers)
        np.save(tmp / "counts.npy", counts)
        write_json(tmp / "stats.json", stats.as_dict())
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _LanguageTokens:
    """Turns one language's encoded documents into kept sequences, counts and ``LanguageStats``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: ShardSettings, writer: _ShardWriter,
                 budget: int | None) -> None:
        self.settings, self.writer, self.budget = settings, writer, budget
        self.ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id)
        self.counts = np.zeros(len(tokenizer), dtype=np.int64)
        self.stats = LanguageStats(budget_tokens=budget)

    def add_batch(self, batch: Batch, encoded: list[list[int]]) -> bool:
        """Account for every line of ``batch``; True once the budget is full (stop reading)."""
        batch_ids: list[int] = []
        encoded_docs = iter(encoded)
        for path, (text, n_bytes, line_no) in batch:
            self.stats.bytes += n_bytes
            if not text:
                self.stats.empty_lines += 1
                continue
            self._add_document(next(encoded_docs), batch_ids)
            if self.stats.budget_reached:
                self.stats.stopped_at = f"{path}:{line_no}"
                break
        if batch_ids:  # one bincount per batch, not per sequence (vocabularies are large)
            ids = np.asarray(batch_ids, dtype=np.int64)
            self.counts += np.bincount(ids, minlength=len(self.counts))[: len(self.counts)]
        return self.stats.budget_reached

    def _add_document(self, ids: list[int], batch_ids: list[int]) -> None:
        stats = self.stats
        stats.documents += 1
        stats.add_document_length(len(ids) + 2)
        kept, short, unk, short_tokens = split_and_filter(ids, *self.ids, self.settings)
        stats.dropped_short += short
        stats.dropped_short_tokens += short_tokens
        stats.dropped_unk += unk
        stats.documents_without_sequence += not kept
        stats.documents_too_short += not kept and not unk  # every chunk under min_seq_length
        for n_kept, seq in enumerate(kept):
            # Whole chunks, first that does not fit ends the language: kept tokens are within
            # one chunk of the budget whatever the text.
            if self.budget is not None and stats.tokens + len(seq) > self.budget:
                stats.budget_reached = True
                stats.dropped_over_budget += len(kept) - n_kept
                return
            self.writer.add(seq)
            batch_ids += seq
            stats.sequences += 1
            stats.tokens += len(seq)
        if self.budget is not None and stats.tokens == self.budget:
            stats.budget_reached = True

    def fraction_done(self, total_bytes: int | None) -> float | None:
        """Share of the work done: of the input bytes, or of the budget when that comes first."""
        shares = ((self.stats.bytes, total_bytes), (self.stats.tokens, self.budget))
        return max((done / total for done, total in shares if total), default=None)


def _tokenise_language(lang: str, paths: list[Path], tokenizer: PreTrainedTokenizerBase, settings: ShardSettings,
                       folder: Path, num_workers: int) -> tuple[np.ndarray, LanguageStats]:
    sizes = [uncompressed_size(p) for p in paths]
    total_bytes = None if None in sizes else sum(sizes)
    writer = _ShardWriter(folder, settings.shard_tokens)
    tokens = _LanguageTokens(tokenizer, settings, writer, settings.budget_for(lang))
    documents = document_batches(paths, settings.text_field, settings.document_separator, settings.encoding_errors)
    try:
        with progress(f"tokenise {lang}") as report, encoded_batches(documents, tokenizer, num_workers) as batches:
            for batch, encoded in batches:
                full = tokens.add_batch(batch, encoded)
                report.update(tokens.fraction_done(total_bytes), tokens=tokens.stats.tokens, bytes=tokens.stats.bytes)
                if full:
                    log.info("Corpus %s: budget of %d tokens reached at %s; the rest is not read",
                             lang, tokens.budget, tokens.stats.stopped_at)
                    break
    finally:
        writer.close()
    if tokens.stats.documents == 0:  # only blank lines (an empty file is refused when it is found)
        raise CorpusError(f"{', '.join(map(str, paths))}: the corpus of language {lang!r} is empty: "
                          f"{tokens.stats.empty_lines} blank lines and no text")
    tokens.stats.finish(lang, settings.min_seq_length, settings.document_separator)
    return tokens.counts, tokens.stats


def build_corpus(files_by_lang: dict[str, list[Path]], tokenizer: PreTrainedTokenizerBase, cache_dir: str | Path,
                 settings: ShardSettings, num_workers: int = 1) -> Path:
    """Tokenise (or reuse) the corpus and return its folder; languages already built are skipped.

    Safe to call from several processes at once (sweep jobs, DDP ranks): one builds under the
    entry's lock, the others wait and then read the published folder.
    """
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"Tokenizer {type(tokenizer).__name__} has no CLS/SEP token; a BERT-style tokenizer is needed")
    settings.check_languages(files_by_lang)
    key = corpus_key(files_by_lang, tokenizer, settings)
    root = Path(cache_dir) / "corpus" / key[:16]
    if (root / META).exists():
        log.info("Corpus cache hit: %s", root)
        return root
    with entry_lock(root):
        if (root / META).exists():  # another process published it while we waited
            log.info("Corpus cache hit (built by another process): %s", root)
            return root
        partial = _resumable_partial(root)
        try:
            for lang, paths in sorted(files_by_lang.items()):
                if (partial / lang / "stats.json").exists():
                    log.info("Corpus %s: language %s already tokenised, skipping", root.name, lang)
                    continue
                _build_language(lang, paths, tokenizer, settings, partial / lang, num_workers)
            _write_meta(partial, key, files_by_lang, tokenizer, settings)
        except Exception:
            # A bad file or setting: fixing it changes the key, so nothing would ever resume this
            # folder. A killed or interrupted build (same input, BaseException) keeps it to resume.
            shutil.rmtree(partial, ignore_errors=True)
            raise
        os.replace(partial, root)
    return root


def _resumable_partial(root: Path) -> Path:
    """The folder that holds finished languages of an unpublished build (only the lock holder calls this).

    An unpublished ``root`` (a build from before publishing was atomic, or a half-deleted entry) is
    adopted as the partial; private temp folders of killed builders are removed.
    """
    partial = root.with_name(f".{root.name}.partial")
    if root.exists():
        if partial.exists():
            shutil.rmtree(root)
        else:
            root.rename(partial)
    partial.mkdir(parents=True, exist_ok=True)
    for leftover in partial.glob(".*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return partial


def _write_meta(folder: Path, key: str, files_by_lang: dict[str, list[Path]], tokenizer: PreTrainedTokenizerBase,
                settings: ShardSettings) -> None:
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    languages = {}
    for lang in sorted(files_by_lang):
        counts += np.load(folder / lang / "counts.npy")
        languages[lang] = read_json(folder / lang / "stats.json")
    if not any(s["sequences"] for s in languages.values()):
        raise CorpusError(
            "The corpus produced no training sequence: every document was shorter than "
            f"{settings.min_seq_length} tokens or mostly [UNK] ({languages}). Add text, lower "
            "corpus.min_seq_length, or set corpus.document_separator=blank_line for paragraph-per-line files.")
    np.save(folder / "token_counts.npy", counts)
    write_json(folder / META, {
        "key": key, "settings": asdict(settings), "vocab_size": len(tokenizer), "languages": languages,
        "warnings": [w for s in languages.values() for w in s.get("warnings", [])],
        "files": {lang: [str(p) for p in paths] for lang, paths in files_by_lang.items()},
    })
    for lang, s in languages.items():
        log.info("Corpus %s: %d documents -> %d sequences (%d tokens%s); %s; dropped %d short, %d mostly-[UNK], "
                 "%d over budget chunks; %d empty lines", lang, s["documents"], s["sequences"], s["tokens"],
                 f" of a {s['budget_tokens']} budget" if s["budget_tokens"] is not None else "",
                 short_drop_summary(s, settings.min_seq_length, document_unit(settings.document_separator)),
                 s["dropped_short"], s["dropped_unk"], s["dropped_over_budget"], s["empty_lines"])
