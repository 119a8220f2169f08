"""``int8.exclude=auto``: which weight MatMuls leave the fast int8 path, chosen from measurement
(docs/serving.md). A layer's *sensitivity* is the error of the mean-pooled outputs, on held-out
corpus text, of the graph with only that layer quantized; errors of different layers add nearly in
quadrature, so the largest squared error per multiply-add leaves first, up to ``auto_share``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from domain_distil.common.hashing import hash_object, short
from domain_distil.conversion.int8_layers import MatMulLayer
from domain_distil.conversion.runners import Inputs, Runner, onnx_session_runner

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# A layer whose squared error is under this share of all layers' is not worth moving at any price.
NEGLIGIBLE_SHARE = 0.01
_STD_FLOOR = 1e-6


@dataclass(frozen=True)
class Calibration:
    """Held-out text as token-id batches (padded), and a digest of it for cache keys."""

    batches: tuple[Inputs, ...]
    texts: int
    digest: str

    @classmethod
    def from_token_ids(cls, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 16) -> Calibration:
        """Batches of ``batch_size`` sequences, each padded to its longest (sorted by length)."""
        from domain_distil.classification.features import pad_batch

        if len(ids) < 2:
            raise ValueError(f"int8 calibration needs at least 2 texts (a spread across texts), got {len(ids)}")
        ordered = sorted((list(seq) for seq in ids), key=len)
        batches = []
        for start in range(0, len(ordered), batch_size):
            input_ids, mask = pad_batch(ordered[start : start + batch_size], pad_id)
            batches.append({"input_ids": input_ids, "attention_mask": mask})
        return cls(tuple(batches), len(ordered), short(hash_object(ordered)))

    @classmethod
    def from_texts(cls, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int = 128) -> Calibration:
        """``texts`` tokenized as the encoder's inputs are (special tokens, truncation)."""
        from domain_distil.classification.features import tokenize_texts

        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls.from_token_ids(tokenize_texts(tokenizer, texts, max_length), pad_id)


def pooled_outputs(runner: Runner, calibration: Calibration) -> np.ndarray:
    """(texts, d): each text's last hidden state averaged over its real tokens."""
    pooled = []
    for batch in calibration.batches:
        hidden = runner(batch)
        keep = batch["attention_mask"].numpy()[..., None].astype(np.float32)
        pooled.append((hidden * keep).sum(1) / keep.sum(1))
    return np.concatenate(pooled)


def pooled_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """RMS of the pooled outputs' difference, per feature in units of its spread across texts."""
    spread = reference.std(0) + _STD_FLOOR
    return float(np.sqrt((((candidate - reference) / spread) ** 2).mean()))


def layer_sensitivity(base: Path, layers: Sequence[MatMulLayer], calibration: Calibration,
                      quantize_only: Callable[[Path, Path, MatMulLayer], None], work: Path,
                      threads: int = 1) -> dict[str, float]:
    """Label -> pooled error of ``base`` with only that layer quantized (``quantize_only(base, out,
    layer)`` writes that graph), run on ``threads`` threads. Each graph is deleted after its run."""
    reference = pooled_outputs(onnx_session_runner(base, threads), calibration)
    out: dict[str, float] = {}
    for layer in layers:
        graph = work / f"only-{layer.label}" / "model.onnx"
        quantize_only(base, graph, layer)
        out[layer.label] = pooled_error(reference, pooled_outputs(onnx_session_runner(graph, threads), calibration))
        shutil.rmtree(graph.parent)
    return out


def choose_exclusions(layers: Sequence[MatMulLayer], sensitivity: dict[str, float], share: float) -> list[str]:
    """Labels to move off the fast path, in graph order: largest squared error per multiply-add
    first, as long as their multiply-adds fit in ``share`` of all; negligible layers never."""
    total_macs = sum(layer.macs_per_token for layer in layers)
    total_error = sum(sensitivity[layer.label] ** 2 for layer in layers)
    ranked = sorted(layers, key=lambda layer: -sensitivity[layer.label] ** 2 / layer.macs_per_token)
    chosen, used = set(), 0
    for layer in ranked:
        if sensitivity[layer.label] ** 2 < NEGLIGIBLE_SHARE * total_error:
            continue  # ranked per multiply-add, so a later layer may still matter
        if used + layer.macs_per_token <= share * total_macs:
            chosen.add(layer.label)
            used += layer.macs_per_token
    return [layer.label for layer in layers if layer.label in chosen]
