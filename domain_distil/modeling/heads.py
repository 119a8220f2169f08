"""Structured self-attentive classifier head (Lin et al., 2017) over encoder token outputs.

Given the encoder's token outputs ``H`` (n tokens × d) the head computes ``r`` attention
distributions over the tokens,

    A = softmax(W_s2 · tanh(W_s1 · Hᵀ))        W_s1: d_a × d,  W_s2: r × d_a  (no biases)

pools ``M = A·H`` (r × d), flattens it and classifies it with a one-hidden-layer tanh MLP. The
penalization ``P = ‖A·Aᵀ − I‖²_F`` pushes the r hops to attend to different tokens; the caller
adds ``coef · P`` (averaged over the batch) to the task loss.

Default size (documented choice): d_a = 350 (the paper's value), r = 4 hops, MLP width 100. On
768-dim inputs that is 768·350 + 350·4 + (768·4·100 + 100) + (100·C + C) = 578,510 parameters for
C = 10 classes and 577,702 for C = 2, i.e. the "about 600,000" of the reproduced paper (its
footnote 1). Paper-size settings (r = 30, MLP 2000+) would put ~46M parameters in the MLP alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class HeadOutput:
    logits: Tensor  # (B, C)
    attention: Tensor  # (B, r, n); rows sum to 1 over real tokens, exactly 0 on padding
    penalty: Tensor  # scalar: ‖AAᵀ − I‖²_F averaged over the batch


def attention_penalty(attention: Tensor) -> Tensor:
    """‖A·Aᵀ − I‖²_F per example, averaged over the batch. ``attention``: (B, r, n)."""
    hops = attention.size(1)
    gram = attention @ attention.transpose(1, 2)  # (B, r, r)
    identity = torch.eye(hops, device=attention.device, dtype=attention.dtype)
    return ((gram - identity) ** 2).sum(dim=(1, 2)).mean()


class SelfAttentionHead(nn.Module):
    """Lin et al.'s structured self-attention + MLP classifier.

    :param input_dim: width d of the encoder outputs (768 for mBERT/DistilmBERT).
    :param num_classes: output logits C (2 for a binary task, the label count for multi-label).
    :param attention_dim: d_a, width of the attention MLP.
    :param num_hops: r, number of attention distributions (rows of A).
    :param hidden_dim: width of the classifier MLP on the flattened r·d embedding.
    :param dropout: applied to the flattened embedding and to the MLP's hidden layer.
    :param standardize_inputs: attend over and pool the token vectors standardised per dimension by
        the training tokens' mean and std (buffers set by :meth:`fit_input_statistics`, saved with the
        weights). A deliberate departure from Lin et al. and the paper (``conf/experiment/paper_*.yaml``
        turn it off): contextual embeddings are anisotropic, most of every token is one shared
        direction; ``benchmarks/head_standardisation.py`` measures both. True by default because heads
        saved before this key existed were trained that way.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        attention_dim: int = 350,
        num_hops: int = 4,
        hidden_dim: int = 100,
        dropout: float = 0.5,
        standardize_inputs: bool = True,
    ) -> None:
        super().__init__()
        if min(input_dim, num_classes, attention_dim, num_hops, hidden_dim) < 1:
            raise ValueError("SelfAttentionHead sizes must all be >= 1")
        self.input_dim = input_dim
        self.num_hops = num_hops
        self.ws1 = nn.Linear(input_dim, attention_dim, bias=False)
        self.ws2 = nn.Linear(attention_dim, num_hops, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_hops * input_dim, hidden_dim)
        self.classifier = nn.Linear(hidden_dim, num_classes)
        self.standardize_inputs = standardize_inputs
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))
        self.register_buffer("input_count", torch.zeros((), dtype=torch.long))  # 0 = not fitted yet

    @torch.no_grad()
    def fit_input_statistics(self, token_sum: Tensor, token_sq_sum: Tensor, count: int) -> None:
        """Set the standardisation from running sums over the training tokens (padding excluded)."""
        mean = token_sum / count
        variance = (token_sq_sum / count - mean**2).clamp(min=0.0)
        self.input_mean.copy_(mean)
        self.input_std.copy_(variance.sqrt().clamp(min=1e-5))
        self.input_count.fill_(count)

    def forward(self, hidden: Tensor, attention_mask: Tensor) -> HeadOutput:
        """``hidden``: (B, n, d) token outputs; ``attention_mask``: (B, n), 1 = real token."""
        if hidden.dim() != 3 or hidden.size(-1) != self.input_dim:
            raise ValueError(f"expected hidden of shape (B, n, {self.input_dim}), got {tuple(hidden.shape)}")
        mask = attention_mask.bool()
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every sequence needs at least one unmasked token")
        if self.standardize_inputs:
            hidden = (hidden.float() - self.input_mean) / self.input_std
        # Score only the real tokens: batches are padded to their longest row, and on short texts
        # (a median of 15-30 tokens in the demo tasks) about half of a padded batch is padding, so
        # running W_s1 over the packed (N_real, d) rows halves the head's main matrix products.
        # Padded positions get -inf before the softmax: exactly zero weight (the reference code
        # adds -10000, which leaves a tiny non-zero weight).
        scores = hidden.new_full((*mask.shape, self.num_hops), float("-inf"))
        scores = scores.masked_scatter(mask.unsqueeze(-1), self.ws2(torch.tanh(self.ws1(hidden[mask]))))
        scores = scores.transpose(1, 2)  # (B, r, n)
        attention = torch.softmax(scores, dim=-1)  # (B, r, n), softmax over tokens
        pooled = attention @ hidden  # (B, r, d)
        flat = self.dropout(pooled.flatten(1))  # (B, r·d)
        features = self.dropout(torch.tanh(self.fc(flat)))
        logits = self.classifier(features)
        return HeadOutput(logits=logits, attention=attention, penalty=attention_penalty(attention))
