"""Length-grouped batches: bucket widths, batch counts, rank split, mid-epoch skip."""

import math

import numpy as np

from datamodules.distill import pad_batch
from datamodules.samplers import LengthGroupedBatchSampler, length_buckets


def test_bucket_edges_match_reference():
    edges = length_buckets(512)
    assert edges[0] == 3 and edges[-1] == 511 and len(edges) == 128
    assert all(b - a == 4 for a, b in zip(edges, edges[1:]))


def test_batches_are_length_homogeneous_and_cover_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(12, 200, size=1003)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(1003 / 8)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    full = [b for b in batches if len(b) == 8]
    homogeneous = [b for b in full if np.ptp(lengths[b]) < 4]
    assert len(homogeneous) >= len(full) - 20  # only the leftover batches may mix buckets


def test_epochs_reshuffle_deterministically():
    lengths = np.arange(12, 112)
    a = LengthGroupedBatchSampler(lengths, 4, seed=1)
    b = LengthGroupedBatchSampler(lengths, 4, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    same = LengthGroupedBatchSampler(lengths, 4, seed=1, reshuffle_each_epoch=False)
    first = list(same)
    same.set_epoch(5)
    assert list(same) == first  # the reference's DDP behaviour: never set_epoch


def test_ranks_split_like_distributed_sampler():
    lengths = np.arange(12, 62)  # 50 sequences over 4 ranks -> 13 each (2 repeated)
    per_rank = [LengthGroupedBatchSampler(lengths, 5, seed=0, rank=r, world_size=4) for r in range(4)]
    indices = [sorted(i for b in s for i in b) for s in per_rank]
    assert all(len(ix) == 13 for ix in indices)
    assert set().union(*map(set, indices)) == set(range(50))
    assert all(len(s) == 3 for s in per_rank)


def test_skip_resumes_mid_epoch():
    lengths = np.arange(12, 112)
    sampler = LengthGroupedBatchSampler(lengths, 4, seed=2)
    full = list(sampler)
    sampler.skip_batches = 7
    assert list(sampler) == full[7:]
    assert list(sampler) == full  # the skip applies once


def test_pad_batch_right_pads():
    batch = pad_batch([np.array([2, 5, 6, 3], dtype=np.int32), np.array([2, 7, 3], dtype=np.int32)], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 5, 6, 3], [2, 7, 3, 0]]
    assert batch["lengths"].tolist() == [4, 3] and batch["n_tokens"] == 7
