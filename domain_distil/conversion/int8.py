"""int8 encoder: ONNX Runtime's dynamic quantization of the exported ONNX graph.

Weights of every MatMul are stored as int8 with one scale per tensor;
activations are quantized per call. This replaced ``torch.ao.quantization.quantize_dynamic``
(deprecated). It was chosen over torchao's ``quantize_(model, Int8DynamicActivationInt8WeightConfig())``
because it measured fastest on the project's CPU at the same agreement with fp32
(``benchmarks/int8_backends.py``, numbers in ``docs/serving.md``).
"""

from __future__ import annotations

import logging
from pathlib import Path


def _not_preprocessing_advice(record: logging.LogRecord) -> bool:
    # The quantizer warns through the root logger that shape-inference pre-processing may help;
    # dynamic quantization of MatMul weights runs without it.
    return not record.getMessage().startswith("Please consider to run pre-processing")


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Write the int8 version of the fp32 ONNX graph ``fp32_path`` to ``int8_path``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.addFilter(_not_preprocessing_advice)
    try:
        quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(_not_preprocessing_advice)
