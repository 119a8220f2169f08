"""ONNX export of an encoder (dynamic sequence length) and its run by ONNX Runtime on the CPU.

The exported graph takes ``input_ids`` and ``attention_mask`` of shape (1, n) and returns the last
hidden state; the batch dimension is fixed at one (the serving and timing case). Needs the
``serve`` extra (``ONNX_PACKAGES``); without it :func:`onnx_runner` raises ImportError.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from domain_distil.conversion.runners import Inputs, Runner

ONNX_PACKAGES = "onnxruntime onnx onnxscript"


class _LastHidden(torch.nn.Module):
    """Export wrapper: two tensor inputs, one tensor output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model: torch.nn.Module, sample: Inputs, path: Path) -> None:
    """Write ``model`` to ``path`` with ``torch.onnx.export`` (dynamo), sequence length dynamic
    between 2 and the model's position limit."""
    import onnx  # noqa: F401  (the exporter needs it; fail here with a clear ImportError)

    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter's graph passes log every rewrite at INFO through the root logger Hydra configures.
    for name in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    seq = torch.export.Dim("seq", min=2, max=int(getattr(model.config, "max_position_embeddings", 512)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter
        torch.onnx.export(
            _LastHidden(model).eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_shapes={"input_ids": {1: seq}, "attention_mask": {1: seq}},
            dynamo=True,
            verbose=False,
        )


def onnx_session_runner(path: Path, threads: int) -> Runner:
    """An ONNX Runtime CPU session over the exported graph, on ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: Inputs) -> np.ndarray:
        feeds = {"input_ids": inputs["input_ids"].numpy(), "attention_mask": inputs["attention_mask"].numpy()}
        return session.run(None, feeds)[0]

    return run


def onnx_size_mb(path: Path) -> float:
    """Size of the exported graph, including its external-data files (``<path>*``)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def onnx_runner(model: torch.nn.Module, sample: Inputs, path: Path, threads: int) -> tuple[Runner, float]:
    """Export ``model`` to ``path`` and run it with ONNX Runtime: (runner, size in MB).

    Raises ImportError when onnxruntime / onnx / onnxscript are not installed, before exporting.
    """
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    export_onnx(model, sample, path)
    return onnx_session_runner(path, threads), onnx_size_mb(path)
