"""How well a candidate corpus fits a task's texts, before any distillation (docs/corpus-selection.md).

Token statistics use the teacher's tokenizer, embedding statistics its mean-pooled encoder; every
function takes a tokenizer or vectors plus texts and returns numbers (reading files and sampling:
``corpus_fit_report.py``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from transformers import PreTrainedTokenizerBase

from domain_distil.sources.sampling import uniform_key

TOKENIZE_BATCH = 512
# Columns a higher value of which means a better fit; the rest (divergences, distances) rank low-first.
HIGHER_IS_BETTER = frozenset({"coverage_mass", "coverage_type", "centroid_cosine"})


@dataclass
class TokenProfile:
    """Token counts of a set of texts: per-type counts (length = the tokenizer's size) and lengths."""

    counts: np.ndarray  # int64, one entry per token id
    lengths: np.ndarray  # tokens per document (no special tokens)
    unk_id: int | None

    @property
    def documents(self) -> int:
        return int(len(self.lengths))

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def unk_share(self) -> float:
        if self.unk_id is None or not self.tokens:
            return 0.0
        return float(self.counts[self.unk_id]) / self.tokens


def batched(texts: Iterable[str], size: int = TOKENIZE_BATCH) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Iterator[list[list[int]]]:
    """Ids of each text without special tokens, one list per batch of ``TOKENIZE_BATCH`` texts."""
    for batch in batched(texts):
        yield tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]


def token_profile(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> TokenProfile:
    """Count every token of ``texts`` (streamed: memory is one batch plus the vocabulary's counters)."""
    vocab = len(tokenizer)
    counts = np.zeros(vocab, dtype=np.int64)
    lengths: list[np.ndarray] = []
    for ids in token_ids(tokenizer, texts):
        # one C-level pass per batch (no per-token Python code): the lengths, then every id into bincount
        batch_lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        lengths.append(batch_lengths)
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(batch_lengths.sum()))
        counts += np.bincount(flat, minlength=vocab)[:vocab]
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return TokenProfile(counts=counts, lengths=all_lengths, unk_id=tokenizer.unk_token_id)


def coverage(task: TokenProfile, corpus: TokenProfile) -> tuple[float, float]:
    """(by mass, by type): the task's token occurrences / distinct types whose type the corpus has.

    [UNK] never counts as covered: it stands for text the tokenizer could not represent.
    """
    present = corpus.counts > 0
    if task.unk_id is not None:
        present[task.unk_id] = False
    task_types = task.counts > 0
    if not task_types.any():
        return 0.0, 0.0
    by_mass = float(task.counts[present].sum()) / task.tokens
    by_type = float((task_types & present).sum()) / float(task_types.sum())
    return by_mass, by_type


def js_divergence(task: TokenProfile, corpus: TokenProfile) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) of the two unigram distributions."""
    if not task.tokens or not corpus.tokens:
        return 1.0
    return float(jensenshannon(task.counts, corpus.counts, base=2) ** 2)


def length_profile(profile: TokenProfile) -> dict[str, float]:
    """Median and 10th/90th percentiles of tokens per document."""
    if not profile.documents:
        return {"p10": 0.0, "median": 0.0, "p90": 0.0}
    p10, median, p90 = np.percentile(profile.lengths, [10, 50, 90])
    return {"p10": float(p10), "median": float(median), "p90": float(p90)}


def token_fit(task: TokenProfile, corpus: TokenProfile) -> dict[str, float]:
    """Every token statistic of one candidate against one task (a flat dict of numbers)."""
    by_mass, by_type = coverage(task, corpus)
    lengths = length_profile(corpus)
    return {
        "coverage_mass": by_mass,
        "coverage_type": by_type,
        "js_divergence": js_divergence(task, corpus),
        "unk_share": corpus.unk_share,
        "corpus_tokens": float(corpus.tokens),
        "corpus_documents": float(corpus.documents),
        "median_doc_tokens": lengths["median"],
        "p10_doc_tokens": lengths["p10"],
        "p90_doc_tokens": lengths["p90"],
        "task_median_tokens": length_profile(task)["median"],
    }


def _normalised(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors.float(), dim=-1)


def nearest_similarities(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """For each query row, the cosine similarities to its ``k`` nearest key rows, (Q, k), best first.

    Brute force in chunks of keys (exact, deterministic): at the sizes this project selects from
    (≤ 100k documents against a few thousand task texts) one matmul per chunk is seconds on a CPU,
    so an approximate index would add a dependency without saving time (docs/corpus-selection.md).
    """
    q, keys = _normalised(queries), _normalised(keys)
    k = min(k, len(keys))
    best = torch.full((len(q), k), -2.0)
    for start in range(0, len(keys), chunk):
        sims = q @ keys[start : start + chunk].T
        best = torch.topk(torch.cat([best, sims], dim=1), k, dim=1).values
    return best


def mmd_rbf(x: torch.Tensor, y: torch.Tensor) -> float:
    """Biased MMD² with an RBF kernel whose bandwidth is the median pairwise distance of x ∪ y."""
    both = torch.cat([x.float(), y.float()])
    distances = torch.cdist(both, both).pow(2)
    off_diagonal = distances[~torch.eye(len(both), dtype=torch.bool)]
    bandwidth = off_diagonal.median().clamp(min=1e-12)
    kernel = torch.exp(-distances / bandwidth)
    n = len(x)
    return float(kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean())


def embedding_fit(task_vectors: torch.Tensor, corpus_vectors: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Centroid cosine, MMD² and mean kNN cosine distance of task texts to corpus documents."""
    centroid_cosine = torch.nn.functional.cosine_similarity(
        task_vectors.float().mean(0), corpus_vectors.float().mean(0), dim=0
    )
    knn = nearest_similarities(task_vectors, corpus_vectors, k)
    return {
        "centroid_cosine": float(centroid_cosine),
        "mmd2": mmd_rbf(_normalised(task_vectors), _normalised(corpus_vectors)),
        "knn_distance": float((1.0 - knn).mean()),
    }


class BottomK:
    """A uniform sample of ``k`` items without replacement, a pure function of (seed, position):
    the items with the ``k`` smallest ``uniform_key`` values. Feed items one by one (one pass, memory
    ``k`` items); ``items()`` returns them in input order."""

    def __init__(self, k: int, seed: int, namespace: str = "") -> None:
        self.k, self.seed, self.namespace = k, seed, namespace
        self._heap: list[tuple[float, int, str]] = []  # max-heap on the key through negation
        self.seen = 0

    def add(self, text: str) -> None:
        key = uniform_key(self.seed, f"{self.namespace}:{self.seen}")
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (-key, self.seen, text))
        elif -self._heap[0][0] > key:
            heapq.heapreplace(self._heap, (-key, self.seen, text))
        self.seen += 1

    def items(self) -> list[str]:
        return [text for _, _, text in sorted(self._heap, key=lambda item: item[1])]


@dataclass
class FitRow:
    """One candidate corpus against one task and language."""

    task: str
    lang: str
    candidate: str
    figures: dict[str, float]
    rank: int = 0

    def as_dict(self) -> dict:
        return {"task": self.task, "lang": self.lang, "candidate": self.candidate, "rank": self.rank} | self.figures


def rank_rows(rows: Sequence[FitRow], key: str) -> list[FitRow]:
    """Rank candidates within each (task, language) by ``key`` (1 = best fit); ties by candidate id."""
    sign = -1 if key in HIGHER_IS_BETTER else 1
    for row in rows:
        if key not in row.figures:
            raise KeyError(f"corpus_fit.rank_by={key!r} is not a figure of the report (have {sorted(row.figures)})")
    # one sort: (task, lang) groups in order, best fit first within each, ties by candidate id
    ranked = sorted(rows, key=lambda r: (r.task, r.lang, sign * r.figures[key], r.candidate))
    for (_, _), group in itertools.groupby(ranked, key=lambda r: (r.task, r.lang)):
        for position, row in enumerate(group, start=1):
            row.rank = position
    return ranked
