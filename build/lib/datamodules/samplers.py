"""Length-grouped batches (reference ``GroupedBatchSampler``), rank-aware and resumable.

Indices are drawn in a seeded random order (one permutation per epoch, or the same one every
epoch like the reference's DDP path), split across ranks like ``DistributedSampler`` (padded to a
multiple of the world size), then grouped into 4-token-wide length buckets: a bucket's buffer is
emitted as soon as it holds ``batch_size`` indices, and at the end the leftovers are concatenated
in bucket order and cut into batches. Total = ceil(n_per_rank / batch_size).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def length_buckets(max_length: int, width: int = 4) -> list[int]:
    """Bucket edges ``arange(3, max_length, width)``: [3, 7, ..., 511] for 512 and width 4."""
    return list(range(3, max_length, width))


class LengthGroupedBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        group_by_size: bool = True,
        reshuffle_each_epoch: bool = True,
        max_length: int = 512,
        bucket_width: int = 4,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(lengths) == 0:
            raise ValueError("LengthGroupedBatchSampler: the dataset is empty")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.group_by_size, self.reshuffle_each_epoch = group_by_size, reshuffle_each_epoch
        self.bins = length_buckets(max_length, bucket_width)
        self.epoch = 0
        self.skip_batches = 0  # set when resuming mid-epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def batches_per_rank(n_sequences: int, batch_size: int, world_size: int) -> int:
        """``len()`` of every rank's sampler, known without building one: ranks are padded to the same size,
        so all ranks have the same number of batches and step together."""
        return math.ceil(math.ceil(n_sequences / world_size) / batch_size)

    @property
    def samples_per_rank(self) -> int:
        return math.ceil(len(self.lengths) / self.world_size)

    def __len__(self) -> int:
        return self.batches_per_rank(len(self.lengths), self.batch_size, self.world_size)

    def rank_indices(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + (self.epoch if self.reshuffle_each_epoch else 0))
        order = rng.permutation(len(self.lengths))
        total = self.samples_per_rank * self.world_size
        if total > len(order):  # pad by repeating the head, as DistributedSampler does
            order = np.concatenate([order, order[: total - len(order)]])
        return order[self.rank : total : self.world_size]

    def batches(self) -> list[list[int]]:
        indices = self.rank_indices().tolist()
        if not self.group_by_size:
            return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        buffers: dict[int, list[int]] = {}
        batches: list[list[int]] = []
        for index in indices:
            group = bisect.bisect_right(self.bins, int(self.lengths[index]))
            buffer = buffers.setdefault(group, [])
            buffer.append(index)
            if len(buffer) == self.batch_size:
                batches.append(buffer)
                buffers[group] = []
        leftovers = [i for group in sorted(buffers) for i in buffers[group]]
        batches += [leftovers[i : i + self.batch_size] for i in range(0, len(leftovers), self.batch_size)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip_batches = self.skip_batches, 0
        yield from self.batches()[skip:]
