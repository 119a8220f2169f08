"""Dynamic int8 quantization: Linear weights stored as int8, activations quantized per call."""

from __future__ import annotations

import copy
import warnings

import torch


def int8_model(model: torch.nn.Module) -> torch.nn.Module:
    """A quantized deep copy of ``model`` (every Linear layer); ``model`` itself is left as it is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
