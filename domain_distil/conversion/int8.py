"""int8 encoder: ONNX Runtime's quantizers applied to the exported ONNX graph, with settings.

Two methods, both maintained ONNX Runtime APIs (``onnxruntime.quantization``):

- ``blockwise``: ``MatMulNBitsQuantizer`` with ``bits=8``: every weight MatMul becomes a
  ``MatMulNBits`` node holding int8 weights with one scale per ``block_size`` input rows, and with
  ``accuracy_level=4`` ONNX Runtime quantizes the activations to int8 per block of the same size at
  run time and multiplies in int8. One scale per 16 values (instead of one per tensor) is what keeps
  the encoder's outlier features from costing the other features their resolution: it is the only
  setting measured at >= 99 % head agreement with fp32 on the demo tasks (``benchmarks/int8_backends.py``,
  ``docs/serving.md``). On the project's AVX2 CPU without VNNI it is *not* faster than fp32.
- ``dynamic`` (default): ``quantize_dynamic`` (``MatMulInteger``: one uint8 scale per activation tensor per
  call), optionally with per-channel weight scales (``per_channel``), 7-bit weights
  (``reduce_range``: avoids the saturation of AVX2's u8*s8 multiply-add when the CPU has no VNNI)
  and some MatMuls kept in fp32 (``exclude``). About 0.5x fp32's latency at 96-99 % agreement.

``exclude`` names MatMul *roles*, found from the graph's structure, so it works on any BERT-shaped
export whatever the exporter calls its nodes: ``qkv`` (three or more MatMuls reading one tensor),
``attn_out``, ``ffn_in`` (its output feeds the GELU), ``ffn_out`` (reads the GELU's output).

The settings are part of the int8 export's cache key (:meth:`Int8Settings.key`), so an export made
with other settings (or by another ONNX Runtime version) is never reused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from domain_distil.common.cpu import CPUINFO, cpu_flags
from domain_distil.common.hashing import hash_object, short

METHODS = ("blockwise", "dynamic")
ROLES = ("qkv", "attn_out", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class Int8Settings:
    """How the fp32 graph is quantized; ``conf/int8/default.yaml`` holds the same defaults."""

    method: str = "dynamic"  # the fast one (docs/serving.md); blockwise agrees more, runs slower here
    # blockwise (MatMulNBits)
    block_size: int = 16
    accuracy_level: int = 4  # 4: int8 activations and int8 compute; 0-3 keep fp32/fp16 compute
    # dynamic (quantize_dynamic)
    per_channel: bool = True
    reduce_range: bool = True
    # both: MatMul roles left in fp32
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"int8.method={self.method!r}; expected one of {METHODS}")
        unknown = sorted(set(self.exclude) - set(ROLES))
        if unknown:
            raise ValueError(f"int8.exclude: unknown MatMul role(s) {unknown}; expected some of {ROLES}")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ValueError(f"int8.block_size={self.block_size}: ONNX Runtime needs a power of two >= 16")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Int8Settings:
        """From the ``int8`` config group (a mapping; missing keys take the defaults)."""
        values = dict(config or {})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown int8 setting(s) {unknown}")
        if "exclude" in values:
            values["exclude"] = tuple(values["exclude"] or ())
        return cls(**values)

    def effective(self) -> dict[str, Any]:
        """The settings that change the graph (a method's unused knobs do not)."""
        out: dict[str, Any] = {"method": self.method, "exclude": sorted(self.exclude)}
        if self.method == "blockwise":
            out.update(block_size=self.block_size, accuracy_level=self.accuracy_level)
        else:
            out.update(per_channel=self.per_channel, reduce_range=self.reduce_range)
        return out

    def key(self) -> str:
        """Cache key of an int8 export: the effective settings and the quantizer's version."""
        import onnxruntime

        return short(hash_object({**self.effective(), "onnxruntime": onnxruntime.__version__}))


# CPU flags (Linux /proc/cpuinfo names) of the instructions that multiply int8 faster than AVX2's
# u8*s8 -> s16 multiply-add: VNNI (AVX-512 or AVX) and AMX tiles.
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_instructions(cpuinfo: Path = CPUINFO) -> str:
    """Which int8 dot-product instructions this CPU has, in words, for benchmark lines: int8's
    speed-up over fp32 depends on them (about 2x the multiply rate with AVX2 alone, 4x with VNNI)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return "unknown int8 instructions (no /proc/cpuinfo)"
    found = [flag for flag in _INT8_FLAGS if flag in flags]
    if found:
        return ", ".join(found)
    return "AVX2, no VNNI/AMX" if "avx2" in flags else "neither AVX2 nor VNNI/AMX"


def matmul_roles(graph_path: Path) -> dict[str, str]:
    """Weight MatMul node name -> role (``ROLES``), from the graph's structure."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights]
    readers: dict[str, int] = {}
    for node in matmuls:
        readers[node.input[0]] = readers.get(node.input[0], 0) + 1

    def downstream(node: Any, depth: int) -> list[Any]:
        # The bias Add sits between a projection and its GELU: look two nodes ahead.
        found, frontier = [], [node]
        for _ in range(depth):
            frontier = [c for n in frontier for out in n.output for c in consumers.get(out, [])]
            found += frontier
        return found

    roles = {}
    for node in matmuls:
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "Gelu":
            roles[node.name] = "ffn_out"
        elif any(n.op_type == "Gelu" for n in downstream(node, 2)):
            roles[node.name] = "ffn_in"
        elif readers[node.input[0]] >= 3:
            roles[node.name] = "qkv"
        else:
            roles[node.name] = "attn_out"
    return roles


class _NoPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizers log every node at INFO (one imports with ``logging.basicConfig(INFO)``) and
    advise shape-inference pre-processing, which fails on the dynamo export's symbolic shapes and
    measured no faster; keep both out of the run's log."""
    root = logging.getLogger()
    loggers = [root, logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    advice = _NoPreprocessingAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantize_int8(fp32_path: Path, int8_path: Path, settings: Int8Settings | None = None) -> None:
    """Write the int8 version of the fp32 ONNX graph ``fp32_path`` to ``int8_path`` (weights in
    ``<int8_path>.data``, as the fp32 export's are)."""
    settings = settings or Int8Settings()
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    excluded = [name for name, role in matmul_roles(fp32_path).items() if role in settings.exclude]
    with _quiet_quantizer():
        if settings.method == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(fp32_path, int8_path, op_types_to_quantize=["MatMul"], per_channel=settings.per_channel,
                             reduce_range=settings.reduce_range, weight_type=QuantType.QInt8,
                             nodes_to_exclude=excluded, use_external_data_format=True)
            return
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        # Symmetric int8 blocks: the zero point is 0, so the int8 kernels need no offset terms.
        config = DefaultWeightOnlyQuantConfig(block_size=settings.block_size, is_symmetric=True,
                                              accuracy_level=settings.accuracy_level, bits=8,
                                              op_types_to_quantize=("MatMul",))
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_path)), bits=8, block_size=settings.block_size,
                                         is_symmetric=True, accuracy_level=settings.accuracy_level,
                                         nodes_to_exclude=excluded, op_types_to_quantize=("MatMul",),
                                         algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(int8_path), use_external_data_format=True)
