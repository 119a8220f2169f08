"""Tokenise a corpus once, in a streaming pass, into memory-mapped int32 shards plus token counts.

Layout of a built corpus (``<cache_dir>/corpus/<hash>/``)::

    meta.json                 settings, tokenizer, per-language statistics
    token_counts.npy          int64 (vocab_size,), every stored id counted ([CLS]/[SEP] included)
    <lang>/shard-00000.bin    raw int32 token ids, sequences back to back
    <lang>/index.npy          int64 (n, 3): shard number, offset (tokens), length
    <lang>/stats.json         documents, kept sequences, drops, tokens, bytes

Each language is built into a temp folder and renamed when complete, so a killed run resumes at
the next unfinished language and never reads a half-written one. ids are int32 because mBERT's
vocabulary (119,547) does not fit in uint16 (the 2019 script's silent corruption, issue #2825).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import PreTrainedTokenizerBase

from domain_distil.common.hashing import hash_files, hash_object
from domain_distil.common.io import read_json, write_json
from domain_distil.corpus.reader import iter_documents, uncompressed_size

log = logging.getLogger(__name__)

TOKEN_DTYPE = np.int32
BATCH_LINES = 512


@dataclass(frozen=True)
class ShardSettings:
    max_seq_length: int = 512
    min_seq_length: int = 12
    max_unk_ratio: float = 0.5
    shard_tokens: int = 50_000_000
    text_field: str = "text"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer: class, vocabulary and special tokens (not its file paths)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hash_object(
        {
            "class": type(tokenizer).__name__,
            "vocab": vocab,
            "special": tokenizer.all_special_tokens,
            "lower": getattr(tokenizer, "do_lower_case", None),
        }
    )


def corpus_key(
    files_by_lang: dict[str, list[Path]], tokenizer: PreTrainedTokenizerBase, settings: ShardSettings
) -> str:
    return hash_object(
        {
            "files": {lang: hash_files(paths) for lang, paths in sorted(files_by_lang.items())},
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "settings": asdict(settings),
        }
    )


def split_and_filter(
    ids: list[int], cls_id: int, sep_id: int, unk_id: int | None, settings: ShardSettings
) -> tuple[list[list[int]], int, int]:
    """Wrap one document in [CLS] ... [SEP], cut it into <= max_seq_length chunks, drop bad ones.

    Returns ``(kept_sequences, n_dropped_short, n_dropped_unk)``. Long sequences are cut into
    consecutive pieces of ``max_seq_length - 2`` over the full sequence, and each piece gets
    [CLS]/[SEP] added unless it already starts/ends with them (the reference's order).
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
    kept, short, unk = [], 0, 0
    for piece in pieces:
        if len(piece) < settings.min_seq_length:
            short += 1
        elif unk_id is not None and piece.count(unk_id) / len(piece) >= settings.max_unk_ratio:
            unk += 1
        else:
            kept.append(piece)
    return kept, short, unk


# --- worker side: the tokenizer is sent once per process, then batches of lines ----------------
_WORKER_TOKENIZER: PreTrainedTokenizerBase | None = None


def _init_worker(tokenizer: PreTrainedTokenizerBase) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode_batch(lines: list[str]) -> list[list[int]]:
    assert _WORKER_TOKENIZER is not None
    return _WORKER_TOKENIZER(lines, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def _line_batches(paths: list[Path], text_field: str, progress: Progress, task_id) -> Iterator[list[str]]:
    batch: list[str] = []
    for path in paths:
        for text, n_bytes in iter_documents(path, text_field):
            batch.append(text)
            progress.advance(task_id, n_bytes)
            if len(batch) == BATCH_LINES:
                yield batch
                batch = []
    if batch:
        yield batch


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


def _build_language(
    lang: str,
    paths: list[Path],
    tokenizer: PreTrainedTokenizerBase,
    settings: ShardSettings,
    target: Path,
    num_workers: int,
    progress: Progress,
) -> None:
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sizes = [uncompressed_size(p) for p in paths]
    task_id = progress.add_task(f"tokenise {lang}", total=None if None in sizes else sum(sizes))
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    stats = {"documents": 0, "sequences": 0, "dropped_short": 0, "dropped_unk": 0, "tokens": 0, "bytes": 0}
    writer = _ShardWriter(tmp, settings.shard_tokens)
    cls_id, sep_id, unk_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id
    batches = _line_batches(paths, settings.text_field, progress, task_id)
    pool = None
    if num_workers > 1:
        pool = mp.get_context("fork").Pool(num_workers, initializer=_init_worker, initargs=(tokenizer,))
        encoded_batches = pool.imap(_encode_batch, batches, chunksize=1)
    else:
        _init_worker(tokenizer)
        encoded_batches = map(_encode_batch, batches)
    try:
        for encoded in encoded_batches:
            batch_ids: list[int] = []
            for ids in encoded:
                stats["documents"] += 1
                kept, short, unk = split_and_filter(ids, cls_id, sep_id, unk_id, settings)
                stats["dropped_short"] += short
                stats["dropped_unk"] += unk
                for seq in kept:
                    writer.add(seq)
                    batch_ids += seq
                    stats["sequences"] += 1
                    stats["tokens"] += len(seq)
            if batch_ids:  # one bincount per batch, not per sequence (vocabularies are large)
                counts += np.bincount(np.asarray(batch_ids, dtype=np.int64), minlength=len(counts))[
                    : len(counts)
                ]
    finally:
        writer.close()
        if pool is not None:
            pool.terminate()
    stats["bytes"] = int(progress.tasks[task_id].completed)
    np.save(tmp / "counts.npy", counts)
    write_json(tmp / "stats.json", stats)
    tmp.rename(target)


def build_corpus(
    files_by_lang: dict[str, list[Path]],
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | Path,
    settings: ShardSettings,
    num_workers: int = 1,
) -> Path:
    """Tokenise (or reuse) the corpus and return its folder; languages already built are skipped."""
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(
            f"Tokenizer {type(tokenizer).__name__} has no CLS/SEP token; a BERT-style tokenizer is needed"
        )
    key = corpus_key(files_by_lang, tokenizer, settings)
    root = Path(cache_dir) / "corpus" / key[:16]
    if (root / "meta.json").exists():
        log.info("Corpus cache hit: %s", root)
        return root
    root.mkdir(parents=True, exist_ok=True)
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=False) as progress:
        for lang, paths in sorted(files_by_lang.items()):
            if (root / lang / "stats.json").exists():
                log.info("Corpus %s: language %s already tokenised, skipping", root.name, lang)
                continue
            _build_language(lang, paths, tokenizer, settings, root / lang, num_workers, progress)
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    languages = {}
    for lang in sorted(files_by_lang):
        counts += np.load(root / lang / "counts.npy")
        languages[lang] = read_json(root / lang / "stats.json")
    np.save(root / "token_counts.npy", counts)
    total_sequences = sum(s["sequences"] for s in languages.values())
    if total_sequences == 0:
        raise ValueError(
            f"The corpus produced no training sequence: every document was shorter than "
            f"{settings.min_seq_length} tokens or mostly [UNK] ({languages}). Add text or lower corpus.min_seq_length."
        )
    write_json(
        root / "meta.json",
        {
            "key": key,
            "settings": asdict(settings),
            "vocab_size": len(tokenizer),
            "languages": languages,
            "files": {lang: [str(p) for p in paths] for lang, paths in files_by_lang.items()},
        },
    )
    for lang, s in languages.items():
        log.info(
            "Corpus %s: %d documents -> %d sequences (%d tokens); dropped %d short, %d mostly-[UNK]",
            lang,
            s["documents"],
            s["sequences"],
            s["tokens"],
            s["dropped_short"],
            s["dropped_unk"],
        )
    return root
