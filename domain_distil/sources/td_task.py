"""The paper's technical-discussion (TD) task: top-10-tag multi-label classification of questions.

Sampling rule (paper §3.2.1) and the seeded procedure (quota phase rarest tag first, then fill, split
by split; test, val, train disjoint) are in docs/data-sources.md, "The TD task". Streaming in bounded
memory: no step looks further than ``sum(sizes)`` entries into any key-ordered list (every entry a
scan passes over is, or becomes, a selected post), so keeping only the ``sum(sizes)`` smallest keys
overall and per tag gives exactly the same result as holding every candidate.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from domain_distil.common.errors import UserInputError

TOP10_TAGS: tuple[str, ...] = (
    "c#", "java", "php", "javascript", "android", "jquery", "python", "html", "c++", "ios")
SPLIT_ORDER: tuple[str, ...] = ("test", "val", "train")


class TaskSamplingError(UserInputError):
    """The candidates cannot satisfy the split sizes or the per-tag minimum."""


@dataclass(frozen=True)
class TagTaskSpec:
    """Sizes and per-tag minima for one language. ``scaled(0.5)`` gives the Japanese sets."""

    tags: tuple[str, ...] = TOP10_TAGS
    sizes: Mapping[str, int] = field(default_factory=lambda: {"test": 1000, "val": 1000, "train": 8000})
    min_per_tag: Mapping[str, int] = field(default_factory=lambda: {"test": 100, "val": 100, "train": 0})

    def __post_init__(self) -> None:
        unknown = set(self.sizes) - set(SPLIT_ORDER)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {SPLIT_ORDER}")
        if len(set(self.tags)) != len(self.tags) or not self.tags:
            raise ValueError(f"tags must be distinct and non-empty, got {self.tags}")

    def scaled(self, factor: float) -> TagTaskSpec:
        """Every size and minimum times ``factor``, rounded (the paper halves Japanese)."""
        return TagTaskSpec(
            tags=self.tags,
            sizes={s: int(round(n * factor)) for s, n in self.sizes.items()},
            min_per_tag={s: int(round(n * factor)) for s, n in self.min_per_tag.items()},
        )

    @property
    def capacity(self) -> int:
        return int(sum(self.sizes.values()))

    def mask(self, tags: Sequence[str]) -> int:
        """Bit i set when tag i of ``self.tags`` is among ``tags``; 0 = not a candidate."""
        return sum(1 << i for i, tag in enumerate(self.tags) if tag in tags)

    def labels(self, mask: int) -> list[str]:
        return [tag for i, tag in enumerate(self.tags) if mask >> i & 1]


@dataclass(frozen=True, slots=True)
class Candidate:
    key: float
    post_id: int
    mask: int
    nbytes: int


class _BottomK:
    """The k candidates with the smallest (key, post_id), as a max-heap."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.heap: list[tuple[float, int, Candidate]] = []

    def offer(self, c: Candidate) -> tuple[bool, Candidate | None]:
        """(kept, evicted)."""
        item = (-c.key, -c.post_id, c)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, item)
            return True, None
        if item > self.heap[0]:  # smaller (key, id) than the current largest
            evicted = heapq.heapreplace(self.heap, item)[2]
            return True, evicted
        return False, None

    def ordered(self) -> list[Candidate]:
        return sorted((c for _, _, c in self.heap), key=lambda c: (c.key, c.post_id))


class CandidatePool:
    """Streams candidate questions (and their answers' sizes) in bounded memory, then samples."""

    def __init__(self, spec: TagTaskSpec) -> None:
        self.spec = spec
        self.overall = _BottomK(spec.capacity)
        self.per_tag = [_BottomK(spec.capacity) for _ in spec.tags]
        self.tag_totals = [0] * len(spec.tags)
        self.candidates = 0
        self._refs: dict[int, int] = {}
        # Answers to a question still held: (key, bytes) each, so the corpus byte histogram can
        # take them out when the question ends up in the task (its answers are left out too).
        self.answers: dict[int, list[tuple[float, int]]] = {}

    def _ref(self, c: Candidate, kept: bool, evicted: Candidate | None) -> None:
        if kept:
            self._refs[c.post_id] = self._refs.get(c.post_id, 0) + 1
        if evicted is not None:
            left = self._refs[evicted.post_id] - 1
            if left:
                self._refs[evicted.post_id] = left
            else:
                del self._refs[evicted.post_id]
                self.answers.pop(evicted.post_id, None)

    def offer(self, c: Candidate) -> None:
        if not c.mask:
            return
        self.candidates += 1
        self._ref(c, *self.overall.offer(c))
        for i, heap in enumerate(self.per_tag):
            if c.mask >> i & 1:
                self.tag_totals[i] += 1
                self._ref(c, *heap.offer(c))

    def add_answer(self, parent_id: int, key: float, nbytes: int) -> None:
        if parent_id in self._refs:
            self.answers.setdefault(parent_id, []).append((key, nbytes))

    def sample(self, where: str = "") -> dict[str, list[Candidate]]:
        return sample_splits(
            self.overall.ordered(),
            [h.ordered() for h in self.per_tag],
            self.tag_totals,
            self.spec,
            where,
        )


def sample_splits(
    overall: list[Candidate],
    per_tag: list[list[Candidate]],
    tag_totals: Sequence[int],
    spec: TagTaskSpec,
    where: str = "",
) -> dict[str, list[Candidate]]:
    """The TD sampling procedure (docs/data-sources.md) on key-ordered lists (see ``CandidatePool``)."""
    used: set[int] = set()
    out: dict[str, list[Candidate]] = {}
    cursor = {i: 0 for i in range(len(spec.tags))}
    fill_cursor = 0
    # Rarest first; ties broken by the tag's position so the order is fully determined.
    tag_order = sorted(range(len(spec.tags)), key=lambda i: (tag_totals[i], i))
    prefix = f"{where}: " if where else ""
    for split in SPLIT_ORDER:
        size = int(spec.sizes.get(split, 0))
        if size <= 0:
            continue
        minimum = int(spec.min_per_tag.get(split, 0))
        chosen: list[Candidate] = []
        counts = [0] * len(spec.tags)

        def take(c: Candidate, chosen: list[Candidate] = chosen, counts: list[int] = counts) -> None:
            used.add(c.post_id)
            chosen.append(c)
            for i in range(len(spec.tags)):
                counts[i] += c.mask >> i & 1

        for i in tag_order:
            lst = per_tag[i]
            while counts[i] < minimum:
                while cursor[i] < len(lst) and lst[cursor[i]].post_id in used:
                    cursor[i] += 1
                if cursor[i] >= len(lst):
                    raise TaskSamplingError(
                        f"{prefix}split {split!r} needs tag {spec.tags[i]!r} at least {minimum} times, but only "
                        f"{counts[i]} could be reached ({tag_totals[i]} questions in the dump carry it, earlier splits "
                        f"took the rest); lower the sizes or set a smaller scale for this language"
                    )
                take(lst[cursor[i]])
        if len(chosen) > size:
            raise TaskSamplingError(
                f"{prefix}split {split!r}: meeting {minimum} per tag took {len(chosen)} posts, more than its size {size}"
            )
        while len(chosen) < size:
            while fill_cursor < len(overall) and overall[fill_cursor].post_id in used:
                fill_cursor += 1
            if fill_cursor >= len(overall):
                raise TaskSamplingError(
                    f"{prefix}split {split!r} needs {size} questions with at least one of the tags, but only "
                    f"{len(chosen)} were left (of {len(overall)} candidates held); lower the sizes or the scale"
                )
            take(overall[fill_cursor])
        out[split] = sorted(chosen, key=lambda c: (c.key, c.post_id))
    return out


def tag_counts(candidates: Sequence[Candidate], spec: TagTaskSpec) -> dict[str, int]:
    return {tag: sum(c.mask >> i & 1 for c in candidates) for i, tag in enumerate(spec.tags)}
