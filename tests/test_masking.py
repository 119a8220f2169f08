"""Dynamic masking: exact target count, never specials or padding, 80/10/10, rare tokens favoured."""

import math

import pytest
import torch

from domain_distil.modeling.masking import IGNORE_INDEX, MaskingConfig, mask_tokens, token_probabilities

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 50


def _batch(generator):
    lengths = torch.tensor([30, 17, 9, 24])
    ids = torch.full((4, 30), PAD)
    for row, n in enumerate(lengths.tolist()):
        ids[row, :n] = torch.randint(5, VOCAB, (n,), generator=generator)
        ids[row, 0], ids[row, n - 1] = CLS, SEP
    ids[1, 5] = UNK
    return ids, lengths


def test_token_probabilities_follow_count_power_and_zero_specials():
    counts = torch.tensor([10, 10, 10, 10, 10, 1, 8, 0])
    probs = token_probabilities(counts, SPECIALS, 0.7)
    assert probs[:5].tolist() == [0.0] * 5
    assert probs[5].item() == pytest.approx(1.0)
    assert probs[6].item() == pytest.approx(8**-0.7, rel=1e-6)
    assert probs[7].item() == pytest.approx(1.0)  # unseen ids count as 1


def test_exact_target_count_and_no_special_or_padding_target():
    generator = torch.Generator().manual_seed(0)
    probs = token_probabilities(torch.ones(VOCAB), SPECIALS, 0.7)
    for _ in range(50):
        ids, lengths = _batch(generator)
        out = mask_tokens(ids, lengths, probs, MASK, PAD, VOCAB, MaskingConfig(), generator=generator)
        targets = out.labels != IGNORE_INDEX
        assert targets.sum().item() == math.ceil(0.15 * lengths.sum().item())
        assert not torch.isin(ids[targets], torch.tensor(SPECIALS)).any()
        assert not (targets & ~out.attention_mask).any()
        assert torch.equal(out.labels[targets], ids[targets])
        assert torch.equal(out.input_ids[~targets], ids[~targets])  # only targets are touched
        assert out.attention_mask.sum(1).tolist() == lengths.tolist()


def test_80_10_10_split_over_many_draws():
    generator = torch.Generator().manual_seed(1)
    probs = token_probabilities(torch.ones(VOCAB), SPECIALS, 0.7)
    masked = kept = random = 0
    for _ in range(400):
        ids, lengths = _batch(generator)
        out = mask_tokens(ids, lengths, probs, MASK, PAD, VOCAB, MaskingConfig(), generator=generator)
        targets = out.labels != IGNORE_INDEX
        new, old = out.input_ids[targets], ids[targets]
        masked += (new == MASK).sum().item()
        same = new == old
        kept += same.sum().item()
        random += ((new != MASK) & ~same).sum().item()
    total = masked + kept + random
    # A random replacement can draw the original id (1/50) or [MASK] (1/50); those land in the
    # other buckets, hence the expected values below.
    assert masked / total == pytest.approx(0.8 + 0.1 / VOCAB, abs=0.015)
    assert kept / total == pytest.approx(0.1 + 0.1 / VOCAB, abs=0.015)
    assert random / total == pytest.approx(0.1 * (1 - 2 / VOCAB), abs=0.015)


def test_rare_tokens_are_selected_more_often_than_frequent_ones():
    counts = torch.ones(VOCAB)
    counts[5] = 10_000  # very frequent
    counts[6] = 1  # rare
    probs = token_probabilities(counts, SPECIALS, 0.7)
    generator = torch.Generator().manual_seed(2)
    ids = torch.tensor([[CLS] + [5, 6] * 20 + [SEP]])
    lengths = torch.tensor([42])
    hits = {5: 0, 6: 0}
    for _ in range(300):
        out = mask_tokens(ids, lengths, probs, MASK, PAD, VOCAB, MaskingConfig(), generator=generator)
        targets = ids[out.labels != IGNORE_INDEX]
        for token in hits:
            hits[token] += (targets == token).sum().item()
    assert hits[6] > 5 * hits[5]


def test_masking_config_must_sum_to_one():
    with pytest.raises(ValueError, match="must sum to 1"):
        MaskingConfig(word_mask=0.8, word_keep=0.1, word_rand=0.2).validate()
