"""What a converted encoder is run through: one message (a batch of one) in, its last hidden
state out as a NumPy array, so PyTorch and ONNX Runtime variants compare and time alike."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Inputs = dict[str, torch.Tensor]  # input_ids, attention_mask: (1, n)
Runner = Callable[[Inputs], np.ndarray]  # -> last hidden state (1, n, d)


def torch_runner(model: torch.nn.Module) -> Runner:
    """A PyTorch model (fp32, or int8 from ``conversion.int8``) as a runner."""

    @torch.inference_mode()
    def run(inputs: Inputs) -> np.ndarray:
        return model(**inputs).last_hidden_state.float().numpy()

    return run
