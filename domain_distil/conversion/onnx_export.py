"""ONNX export of an encoder with dynamic batch and sequence axes: ``input_ids`` and
``attention_mask`` (B, n) in, the last hidden state (B, n, d) out, so a padded batch is one ONNX
Runtime call. Uses the dynamo exporter; needs the ``serve`` extra (``ONNX_PACKAGES``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ONNX_PACKAGES = "onnxruntime onnx onnxscript"
# The version of the graph export_onnx writes, part of every cache entry made from it: an entry of
# another version is exported (and quantized) again. 2: plain attention (_eager_attention).
EXPORT_FORMAT = 2

# torch.export specialises a dimension of size 0 or 1 to a constant: trace with 2 rows of 8 tokens.
_TRACE_SHAPE = (2, 8)


class _LastHidden(torch.nn.Module):
    """Export wrapper: two tensor inputs, one tensor output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Write ``model`` (an encoder body) to ``path``: batch dynamic, sequence length dynamic between
    2 and the model's position limit. Raises ImportError without the ONNX packages."""
    import onnx  # noqa: F401  (the exporter needs it; fail here with a clear ImportError)
    import onnxscript  # noqa: F401

    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter's graph passes log every rewrite at INFO through the root logger Hydra configures.
    for name in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=int(getattr(model.config, "max_position_embeddings", 512)))
    sample = torch.ones(_TRACE_SHAPE, dtype=torch.long)
    with warnings.catch_warnings(), _eager_attention(model):
        warnings.simplefilter("ignore")  # exporter chatter about optional dependencies
        torch.onnx.export(
            _LastHidden(model).eval(),
            (sample, torch.ones_like(sample)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            dynamo=True,
            verbose=False,
        )


@contextmanager
def _eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Export the plain attention (matmul, mask add, softmax, matmul) instead of PyTorch's
    ``scaled_dot_product_attention``, whose export adds a mask ``Where`` and a NaN guard per layer:
    1.0 ms of the int8 student's 7.1 ms at 128 tokens on the measured CPU (docs/serving.md). The
    model's own setting is restored, so its PyTorch runs keep the fused kernel."""
    previous = getattr(model.config, "_attn_implementation", None)
    if previous is None or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def onnx_size_mb(path: Path) -> float:
    """Size of an exported graph, including its external-data files (``<path>*``)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
