"""Documents in, token ids out, in input order: batching, and tokeniser worker processes.

The tokenizer is sent once per worker process, then batches of texts. The main process keeps
each batch's documents (with their empty lines and byte counts) so that it can account for
every input line while the workers only see texts.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from domain_distil.corpus.reader import Document, read_documents

BATCH_LINES = 512
Batch = list[tuple[Path, Document]]

_WORKER_TOKENIZER: PreTrainedTokenizerBase | None = None


def _init_worker(tokenizer: PreTrainedTokenizerBase) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode_batch(texts: list[str]) -> list[list[int]]:
    assert _WORKER_TOKENIZER is not None
    if not texts:
        return []
    return _WORKER_TOKENIZER(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def document_batches(
    paths: list[Path], text_field: str, separator: str, encoding_errors: str
) -> Iterator[Batch]:
    """Batches of ``BATCH_LINES`` non-empty documents (files in order), with the empty lines between them."""
    batch: Batch = []
    n_texts = 0
    for path in paths:
        for document in read_documents(path, text_field, separator, encoding_errors):
            batch.append((path, document))
            n_texts += bool(document[0])
            if n_texts == BATCH_LINES:
                yield batch
                batch, n_texts = [], 0
    if batch:
        yield batch


@contextmanager
def encoded_batches(
    batches: Iterator[Batch], tokenizer: PreTrainedTokenizerBase, num_workers: int
) -> Iterator[Iterator[tuple[Batch, list[list[int]]]]]:
    """``(batch, ids of its non-empty documents)`` in input order.

    At most ``2 * num_workers`` batches are in flight: ``Pool.imap`` would read the whole corpus
    into its task queue whenever reading is faster than tokenising, and a budget stops early.
    """

    def texts(batch: Batch) -> list[str]:
        return [text for _, (text, _, _) in batch if text]

    if num_workers <= 1:
        _init_worker(tokenizer)
        yield ((batch, _encode_batch(texts(batch))) for batch in batches)
        return
    pool = mp.get_context("fork").Pool(num_workers, initializer=_init_worker, initargs=(tokenizer,))

    def ordered() -> Iterator[tuple[Batch, list[list[int]]]]:
        in_flight: deque = deque()
        for batch in batches:
            in_flight.append((batch, pool.apply_async(_encode_batch, (texts(batch),))))
            if len(in_flight) >= 2 * num_workers:
                done, result = in_flight.popleft()
                yield done, result.get()
        for done, result in in_flight:  # reading is over: nothing is added any more
            yield done, result.get()

    try:
        yield ordered()
    finally:
        pool.terminate()
        pool.join()
