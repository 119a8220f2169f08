"""The messages Table 5 times: exact-length synthetic ones, realistic-length ones (drawn from a
text file or from a log-normal length distribution), and held-out texts, each a batch of one.

Every message is tokenized on its own, without padding, because the measurement is the serving
case: one message per forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from domain_distil.common.records import iter_records
from domain_distil.conversion.runners import Inputs


def _special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence ([CLS] / [SEP], <s> / </s>).

    Found by encoding a probe with and without specials (fast tokenizers in transformers 5 have
    no ``build_inputs_with_special_tokens``)."""
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ValueError(f"cannot locate the body of {probe!r} in its encoding with special tokens: {full}")


def synthetic_message(tokenizer, length: int, rng: np.random.Generator) -> Inputs:
    """A message of exactly ``length`` tokens (specials included), body drawn from the vocabulary."""
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    if length <= n_special:
        raise ValueError(f"speed.lengths: {length} tokens leaves no room next to {n_special} special tokens")
    specials = set(tokenizer.all_special_ids)
    vocab = np.array([i for i in range(len(tokenizer)) if i not in specials])
    body = rng.choice(vocab, size=length - n_special).tolist()
    prefix, suffix = _special_frame(tokenizer)
    input_ids = torch.tensor([prefix + body + suffix], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def tokenized_messages(tokenizer, texts: Sequence[str], max_length: int) -> list[Inputs]:
    """Each text as its own batch of one (no padding), truncated to ``max_length`` tokens."""
    encodings = (tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt") for text in texts)
    return [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]} for enc in encodings]


def read_texts(path: str | Path) -> list[str]:
    """Messages from a .txt (one per line), .jsonl (field ``text``) or .csv (column ``text``) file."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".csv"):
        texts = path.read_text(encoding="utf-8").split("\n")
    else:
        texts = []
        for number, row in iter_records(path, required_columns=("text",)):
            if not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{number}: expected a JSON object with a string field 'text'")
            texts.append(row["text"])
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"{path}: no non-empty messages")
    return texts


def realistic_lengths(n: int, mu: float, sigma: float, max_length: int, min_length: int, seed: int) -> list[int]:
    """Token lengths ~ round(exp(Normal(mu, sigma))), clipped to [min_length, max_length]."""
    draws = np.random.default_rng(seed).lognormal(mu, sigma, size=n)
    return np.clip(np.rint(draws), min_length, max_length).astype(int).tolist()


def realistic_messages(
    tokenizer, texts: Sequence[str] | None, n: int, mu: float, sigma: float, max_length: int, seed: int
) -> list[Inputs]:
    """``n`` messages of realistic length: sampled from ``texts`` if given, else log-normal lengths."""
    rng = np.random.default_rng(seed)
    if texts:
        chosen = rng.choice(len(texts), size=n, replace=n > len(texts))
        return tokenized_messages(tokenizer, [texts[i] for i in chosen], max_length)
    floor = tokenizer.num_special_tokens_to_add(pair=False) + 1
    return [synthetic_message(tokenizer, length, rng) for length in realistic_lengths(n, mu, sigma, max_length, floor, seed)]
