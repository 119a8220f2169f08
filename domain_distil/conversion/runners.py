"""What a converted encoder is run through: token ids and attention mask in (a batch may be padded),
the last hidden state out as NumPy, so PyTorch and ONNX Runtime variants compare and time alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Inputs = dict[str, torch.Tensor]  # input_ids, attention_mask: (B, n)
Runner = Callable[[Inputs], np.ndarray]  # -> last hidden state (B, n, d), float32
# ONNX Runtime graph fusions left out of every session (measured slower: onnx_session_runner).
UNFUSED = ["SkipLayerNormFusion"]


def torch_runner(model: torch.nn.Module) -> Runner:
    """A PyTorch model (the fp32 reference) as a runner."""

    @torch.inference_mode()
    def run(inputs: Inputs) -> np.ndarray:
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return out.last_hidden_state.float().numpy()

    return run


def onnx_session_runner(path: Path, threads: int) -> Runner:
    """An ONNX Runtime CPU session over an exported graph (fp32 or int8) on ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ONNX Runtime's default, stated so a change of default cannot slow the variants silently.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Except one fusion: SkipLayerNormalization made those nodes 9x slower on the measured CPU
    # (2.5 ms against 0.27 ms per 128-token run of the 6-layer student: docs/serving.md).
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=UNFUSED)

    def run(inputs: Inputs) -> np.ndarray:
        feeds = {name: inputs[name].to(torch.int64).numpy() for name in ("input_ids", "attention_mask")}
        return session.run(None, feeds)[0]

    return run
