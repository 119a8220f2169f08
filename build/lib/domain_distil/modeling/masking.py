"""Dynamic MLM masking, done per batch on the device (reference ``prepare_batch_mlm``).

Exactly ``ceil(mlm_mask_prop * n_tokens)`` targets per batch, drawn jointly over the flattened
batch without replacement with probability proportional to ``count ** -mlm_smoothing``; special
tokens (and so padding) have weight 0; then 80% [MASK], 10% keep, 10% a uniformly random id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskingConfig:
    mlm_mask_prop: float = 0.15
    word_mask: float = 0.8
    word_keep: float = 0.1
    word_rand: float = 0.1
    mlm_smoothing: float = 0.7

    def validate(self) -> None:
        total = self.word_mask + self.word_keep + self.word_rand
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"distill.masking: word_mask + word_keep + word_rand must sum to 1, got "
                f"{self.word_mask} + {self.word_keep} + {self.word_rand} = {total:g}"
            )
        if min(self.word_mask, self.word_keep, self.word_rand) < 0:
            raise ValueError("distill.masking: word_mask, word_keep and word_rand must be >= 0")
        if not 0.0 < self.mlm_mask_prop < 1.0:
            raise ValueError(f"distill.masking.mlm_mask_prop must be in (0, 1), got {self.mlm_mask_prop}")


def token_probabilities(counts: torch.Tensor, special_ids: list[int], smoothing: float) -> torch.Tensor:
    """``max(count, 1) ** -smoothing`` per vocabulary id, 0 for every special token."""
    probs = counts.double().clamp(min=1).pow(-smoothing)
    probs[torch.as_tensor(sorted(set(special_ids)), dtype=torch.long)] = 0.0
    return probs.float()


@dataclass
class MaskedBatch:
    input_ids: torch.Tensor  # (B, L) corrupted ids, fed to teacher and student alike
    labels: torch.Tensor  # (B, L) original id at targets, IGNORE_INDEX elsewhere
    attention_mask: torch.Tensor  # (B, L) bool, from lengths


def mask_tokens(
    token_ids: torch.Tensor,
    lengths: torch.Tensor,
    token_probs: torch.Tensor,
    mask_id: int,
    pad_id: int,
    vocab_size: int,
    config: MaskingConfig,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Mask a right-padded batch; every random draw uses ``generator`` (on the batch's device)."""
    batch_size, seq_len = token_ids.shape
    attention_mask = torch.arange(seq_len, device=token_ids.device)[None, :] < lengths[:, None]  # (B, L)

    n_tokens = int(lengths.sum().item())
    n_targets = math.ceil(config.mlm_mask_prop * n_tokens)
    x_prob = token_probs[token_ids.flatten()].clone()  # (B*L,)
    x_prob[~attention_mask.flatten()] = 0.0  # padding beyond lengths is never a target
    n_candidates = int((x_prob > 0).sum().item())
    if n_candidates == 0:
        raise ValueError("mask_tokens: the batch has no maskable token (only special tokens or padding)")
    n_targets = min(n_targets, n_candidates)
    chosen = torch.multinomial(x_prob / x_prob.sum(), n_targets, replacement=False, generator=generator)
    pred_mask = torch.zeros(batch_size * seq_len, dtype=torch.bool, device=token_ids.device)
    pred_mask[chosen] = True
    pred_mask = pred_mask.view(batch_size, seq_len)
    pred_mask &= token_ids != pad_id  # the reference's extra guard

    targets = token_ids[pred_mask]
    action_probs = torch.tensor(
        [config.word_mask, config.word_keep, config.word_rand], device=token_ids.device, dtype=torch.float
    )
    action = torch.multinomial(action_probs, len(targets), replacement=True, generator=generator)
    random_ids = torch.randint(vocab_size, targets.shape, device=token_ids.device, generator=generator)
    replaced = torch.where(action == 0, torch.full_like(targets, mask_id), targets)
    replaced = torch.where(action == 2, random_ids, replaced)

    input_ids = token_ids.clone()
    input_ids[pred_mask] = replaced
    labels = torch.full_like(token_ids, IGNORE_INDEX)
    labels[pred_mask] = targets
    return MaskedBatch(input_ids=input_ids, labels=labels, attention_mask=attention_mask)
