"""Frozen-encoder feature cache: token outputs computed once, reused by every seed.

With a frozen encoder the head only sees ``last_hidden_state``, which depends on the encoder, the
texts and the truncation length, never on the seed. Layout: docs/formats.md. Only real
(non-padding) tokens are stored, float16 by default: half the disk, and its ~1e-3 relative rounding
is far below what the head (computing in float32) can resolve. A folder is built under a file lock
in a private temp folder and appears by one rename (``common.locking.build_entry``): a killed job
never leaves half a cache, and two jobs never encode the same split twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from domain_distil.common.hashing import hash_object, short
from domain_distil.common.locking import build_entry

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def tokenize_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with the model's special tokens, truncated to ``max_length``; no padding."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return [list(ids) for ids in encoded["input_ids"]]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into (input_ids, attention_mask), both (B, longest)."""
    longest = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


@dataclass
class FeatureStore:
    """Per-example token outputs of one split: ``hidden[offsets[i]:offsets[i+1]]`` is row i."""

    hidden: Tensor  # (T, d)
    offsets: Tensor  # (N + 1,), int64

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def __getitem__(self, index: int) -> Tensor:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.hidden[start:end].float()

    @property
    def dim(self) -> int:
        return self.hidden.size(1)


@torch.inference_mode()
def encode_texts(encoder: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
                 batch_size: int = 64, dtype: torch.dtype = torch.float16, device: str | torch.device = "cpu",
                 desc: str = "encoding") -> FeatureStore:
    """Run the frozen encoder over ``texts`` (longest first, to pad little) and keep real tokens."""
    encoder.eval()
    ids = tokenize_texts(tokenizer, texts, max_length)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    rows: list[Tensor | None] = [None] * len(ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, mininterval=2.0):
        batch = order[start : start + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in batch], pad_id)
        hidden = encoder(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        hidden = hidden.to("cpu", dtype)
        for row, index in enumerate(batch):
            rows[index] = hidden[row, : len(ids[index])].clone()
    lengths = torch.tensor([0] + [len(seq) for seq in ids], dtype=torch.long)
    return FeatureStore(hidden=torch.cat(rows, dim=0), offsets=torch.cumsum(lengths, dim=0))  # type: ignore[arg-type]


class FeatureCache:
    """Content-addressed store of :class:`FeatureStore` s for the encoder ``encoder_hash`` under ``root``
    (``${paths.cache_dir}/features``). ``load_encoder`` is called at most once, on the first miss: a
    fully cached sweep never loads the encoder weights at all."""

    def __init__(self, root: str | Path, encoder_hash: str, max_length: int,
                 load_encoder: Callable[[], tuple[nn.Module, PreTrainedTokenizerBase]], dtype: str = "float16",
                 batch_size: int = 64, device: str | torch.device = "cpu") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"feature dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.root = Path(root)
        self.encoder_hash = encoder_hash
        self.max_length = max_length
        self.dtype = dtype
        self.batch_size = batch_size
        self.device = device
        self._load_encoder = load_encoder
        self._encoder: tuple[nn.Module, PreTrainedTokenizerBase] | None = None
        self.hits = 0
        self.misses = 0
        self.encode_seconds = 0.0

    def key(self, texts: Sequence[str]) -> str:
        return short(hash_object({"encoder": self.encoder_hash, "dataset": hash_object(list(texts)),
                                  "max_length": self.max_length, "dtype": self.dtype,
                                  "version": FORMAT_VERSION}), 24)

    def path(self, texts: Sequence[str]) -> Path:
        return self.root / self.key(texts)

    def get(self, texts: Sequence[str], name: str = "split") -> FeatureStore:
        """Load the split's features, computing and storing them on a miss.

        Sweep jobs of one encoder often miss on the same split at once: the first takes the
        entry's lock and encodes, the others wait for it and load its result instead of encoding
        the same texts again.
        """
        folder = self.path(texts)
        computed: list[FeatureStore] = []

        def build(tmp: Path) -> None:
            if self._encoder is None:
                self._encoder = self._load_encoder()
            encoder, tokenizer = self._encoder
            encoder.to(self.device)
            started = time.perf_counter()
            store = encode_texts(encoder, tokenizer, texts, self.max_length, self.batch_size,
                                 DTYPES[self.dtype], self.device, desc=f"encoding {name}")
            self.encode_seconds += time.perf_counter() - started
            computed.append(store)
            save_file({"hidden": store.hidden.contiguous(), "offsets": store.offsets}, str(tmp / "features.safetensors"))
            meta = {"encoder_hash": self.encoder_hash, "dataset_hash": hash_object(list(texts)),
                    "max_length": self.max_length, "dtype": self.dtype, "examples": len(store),
                    "tokens": store.hidden.size(0), "dim": store.dim, "version": FORMAT_VERSION}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))

        build_entry(folder, build, is_complete=lambda path: (path / "features.safetensors").is_file())
        if computed:
            self.misses += 1
            return computed[0]
        self.hits += 1
        tensors = load_file(str(folder / "features.safetensors"))
        return FeatureStore(hidden=tensors["hidden"], offsets=tensors["offsets"])
