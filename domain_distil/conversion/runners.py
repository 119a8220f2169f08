"""What a converted encoder is run through: a batch of token ids and its attention mask in, the
last hidden state out as a NumPy array, so PyTorch and ONNX Runtime variants compare and time alike.

A batch may be padded (rows of different lengths): every runner takes the attention mask, and only
the positions the mask keeps are meaningful in the output.
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
    """An ONNX Runtime CPU session over an exported graph (fp32 or int8), on ``threads`` intra-op
    threads, fed whole batches (the graph's batch and sequence axes are dynamic)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ONNX Runtime's default, stated so a change of default cannot slow the variants silently
    # (extended and layout optimisations were measured; nothing here is disabled).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Except one: fusing the residual Add into LayerNormalization (SkipLayerNormalization) made those
    # nodes 9x slower on the measured CPU (2.5 ms against 0.27 ms per 128-token run of the 6-layer
    # student, fp32 and int8 alike: docs/serving.md); the plain LayerNormalization kernel is kept.
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=UNFUSED)

    def run(inputs: Inputs) -> np.ndarray:
        feeds = {name: inputs[name].to(torch.int64).numpy() for name in ("input_ids", "attention_mask")}
        return session.run(None, feeds)[0]

    return run
