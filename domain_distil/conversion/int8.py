"""int8 encoder: ONNX Runtime's quantizers (``quantize_dynamic``, ``MatMulNBitsQuantizer``) applied to
the exported ONNX graph with :class:`Int8Settings`; the methods, token scaling and ``exclude=auto``
are explained, with their measurements, in docs/serving.md ("CPU variants").

The effective settings, the quantizer's version and (for ``auto``) the calibration texts' digest
make the export's cache key (:meth:`Int8Settings.key`). Beside every int8 graph, ``int8.json``
records the settings and the excluded layers: what a bundle copies into its manifest.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from domain_distil.common import cpu
from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import hash_object, short
from domain_distil.common.io import read_json, write_json
from domain_distil.conversion.int8_auto import Calibration, choose_exclusions, layer_sensitivity
from domain_distil.conversion.int8_layers import (
    LAYER_NAMES,
    ROLES,
    MatMulLayer,
    graph_layers,
    select_layers,
    token_scale,
)
from domain_distil.conversion.onnx_export import EXPORT_FORMAT

METHODS = ("blockwise", "dynamic")
EXCLUDED_AS = ("blockwise", "fp32")
AUTO = "auto"
RECORD = "int8.json"


def _is_label(entry: str) -> bool:
    block, _, name = entry.partition(".")
    return block.isdigit() and name in LAYER_NAMES


def _graph_order(entry: str) -> tuple[int, int]:
    """Roles first, then labels in graph order: the order ``int8.json`` records excluded layers in."""
    block, _, name = entry.partition(".")
    return (int(block), LAYER_NAMES.index(name)) if name else (-1, ROLES.index(entry) if entry in ROLES else -1)


@dataclass(frozen=True)
class Int8Settings:
    """How the fp32 graph is quantized; ``conf/int8/default.yaml`` holds the same defaults."""

    method: str = "dynamic"
    # blockwise (MatMulNBits): the whole graph, or the excluded layers with excluded_as=blockwise
    block_size: int = 32
    accuracy_level: int = 4  # 4: int8 activations and int8 compute; 0-3 keep fp32/fp16 compute
    # dynamic (quantize_dynamic)
    per_channel: bool = True
    # 7-bit weights: needed where AVX2 multiplies u8 x s8 with a saturating instruction (no VNNI);
    # None: decided by the CPU that quantizes (has_int8_dot_products), and recorded.
    reduce_range: bool | None = None
    # Layer names whose inputs are scaled per token: where the outlier tokens are (docs/serving.md);
    # q, k and attn_out measured no better for the extra nodes.
    token_scale: tuple[str, ...] = ("v", "ffn_in", "ffn_out")
    # layers kept off the method's fast path: roles, labels or "auto"
    exclude: tuple[str, ...] = (AUTO,)
    excluded_as: str = "blockwise"  # dynamic only; blockwise's excluded layers stay fp32
    auto_share: float = 0.3  # exclude=auto: at most this share of the MatMul multiply-adds

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"int8.method={self.method!r}; expected one of {METHODS}")
        unknown = sorted(e for e in self.exclude if e not in ROLES and e != AUTO and not _is_label(e))
        if unknown:
            raise ConfigError(f"int8.exclude: unknown MatMul role(s) or label(s) {unknown}; expected roles {ROLES}, "
                              f"labels <block>.<{'|'.join(LAYER_NAMES)}> (e.g. 2.ffn_out) or {AUTO!r}")
        if AUTO in self.exclude and len(self.exclude) > 1:
            raise ConfigError(f"int8.exclude={list(self.exclude)}: {AUTO!r} chooses the layers itself; give it alone")
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise ConfigError(f"int8.block_size={self.block_size}: ONNX Runtime needs a power of two >= 16")
        if self.excluded_as not in EXCLUDED_AS:
            raise ConfigError(f"int8.excluded_as={self.excluded_as!r}; expected one of {EXCLUDED_AS}")
        unknown = sorted(set(self.token_scale) - set(LAYER_NAMES))
        if unknown:
            raise ConfigError(f"int8.token_scale: unknown layer name(s) {unknown}; expected some of {LAYER_NAMES}")
        if not 0.0 <= self.auto_share <= 1.0:
            raise ConfigError(f"int8.auto_share={self.auto_share}: expected a share of the multiply-adds in [0, 1]")

    @property
    def auto(self) -> bool:
        return AUTO in self.exclude

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Int8Settings:
        """From the ``int8`` config group (a mapping; missing keys take the defaults). Its
        ``calibration`` entry is data, not a setting: ``serving.quantize.int8_calibration_texts`` reads it."""
        values = {k: v for k, v in dict(config or {}).items() if k != "calibration"}
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown int8 setting(s) {unknown}")
        for name in ("exclude", "token_scale"):
            if name in values:
                raw = values[name]
                values[name] = (raw,) if isinstance(raw, str) else tuple(raw or ())
        return cls(**values)

    @property
    def weights_7bit(self) -> bool:
        """``reduce_range`` as applied: ``None`` follows this CPU (7-bit without VNNI/AMX)."""
        return self.reduce_range if self.reduce_range is not None else not has_int8_dot_products()

    def effective(self) -> dict[str, Any]:
        """The settings that change the graph (a method's unused knobs do not)."""
        # Ordered, so that the order the layers are named in does not change the key.
        out: dict[str, Any] = {"method": self.method, "exclude": sorted(self.exclude, key=_graph_order)}
        if self.method == "blockwise":
            out.update(block_size=self.block_size, accuracy_level=self.accuracy_level)
        else:
            out.update(per_channel=self.per_channel, reduce_range=self.weights_7bit, token_scale=sorted(self.token_scale))
            if self.exclude:
                out["excluded_as"] = self.excluded_as
                if self.excluded_as == "blockwise":
                    out.update(block_size=self.block_size, accuracy_level=self.accuracy_level)
        if self.auto:
            out["auto_share"] = self.auto_share
        return out

    def key(self, calibration: Calibration | None = None) -> str:
        """Cache key of an int8 export: the effective settings, the quantizer's version and, for
        ``exclude=auto``, the calibration texts the choice was measured on."""
        import onnxruntime

        record = {**self.effective(), "onnxruntime": onnxruntime.__version__, "export": EXPORT_FORMAT}
        if self.auto:
            record["calibration"] = calibration.digest if calibration is not None else None
        return short(hash_object(record))


# CPU flags (Linux /proc/cpuinfo names) of the instructions that multiply int8 faster than AVX2's
# u8*s8 -> s16 multiply-add: VNNI (AVX-512 or AVX) and AMX tiles.
_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def has_int8_dot_products(cpuinfo: Path | None = None) -> bool:
    """Whether this CPU has VNNI or AMX (False where unknown: the safe answer for ``reduce_range``)."""
    return _has_int8_dot_products(cpuinfo or cpu.CPUINFO)


@functools.cache  # weights_7bit asks several times per build (once per layer with exclude=auto)
def _has_int8_dot_products(cpuinfo: Path) -> bool:
    flags = cpu.cpu_flags(cpuinfo)
    return flags is not None and any(flag in flags for flag in _INT8_FLAGS)


def int8_instructions(cpuinfo: Path | None = None) -> str:
    """Which int8 dot-product instructions this CPU has, in words, for benchmark lines: int8's
    speed-up over fp32 depends on them (about 2x the multiply rate with AVX2 alone, 4x with VNNI)."""
    flags = cpu.cpu_flags(cpuinfo)
    if flags is None:
        return "unknown int8 instructions (no /proc/cpuinfo)"
    found = [flag for flag in _INT8_FLAGS if flag in flags]
    if found:
        return ", ".join(found)
    return "AVX2, no VNNI/AMX" if "avx2" in flags else "neither AVX2 nor VNNI/AMX"


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

    def advice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")

    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path))


def _save(model: Any, path: Path) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    return path


def _blockwise(model: Any, settings: Int8Settings, layers: list[MatMulLayer], nodes: set[str]) -> Any:
    """``model`` (whose weight MatMuls are ``layers``) with the MatMuls in ``nodes`` quantized
    block-wise (``MatMulNBits``, 8 bits)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    others = [layer.node for layer in layers if layer.node not in nodes]
    # Symmetric int8 blocks: the zero point is 0, so the int8 kernels need no offset terms.
    quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=settings.block_size, is_symmetric=True,
                                     accuracy_level=settings.accuracy_level, nodes_to_exclude=others,
                                     op_types_to_quantize=("MatMul",))
    quantizer.process()
    return quantizer.model.model


def _dynamic(source: Path, target: Path, settings: Int8Settings, nodes: list[str]) -> None:
    """``quantize_dynamic`` of the MatMuls ``nodes`` of ``source`` (the others stay as they are)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=settings.per_channel,
                     reduce_range=settings.weights_7bit, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                     use_external_data_format=True)


def _token_scaled(model: Any, settings: Int8Settings, layers: list[MatMulLayer]) -> Any:
    """``model`` with token scaling around those of ``layers`` that ``settings.token_scale`` names."""
    scaled = {layer.node for layer in layers if layer.name in settings.token_scale}
    return token_scale(model, scaled) if scaled else model


def auto_exclusions(fp32_path: Path, layers: list[MatMulLayer], work: Path, settings: Int8Settings,
                    calibration: Calibration, threads: int = 1) -> tuple[list[str], dict[str, float]]:
    """``exclude=auto``: (labels to exclude, every layer's sensitivity), measured on ``calibration``
    with the method's own settings (for ``dynamic``, token scaling included)."""
    dynamic = settings.method == "dynamic"
    base = fp32_path
    if dynamic and any(layer.name in settings.token_scale for layer in layers):
        base = _save(_token_scaled(_load(fp32_path), settings, layers), work / "token_scaled" / "model.onnx")

    def quantize_only(source: Path, target: Path, layer: MatMulLayer) -> None:
        if dynamic:
            _dynamic(source, target, settings, [layer.node])
        else:
            _save(_blockwise(_load(source), settings, layers, {layer.node}), target)

    with _quiet_quantizer():
        sensitivity = layer_sensitivity(base, layers, calibration, quantize_only, work, threads)
    return choose_exclusions(layers, sensitivity, settings.auto_share), sensitivity


def require_calibration(settings: Int8Settings, calibration: Calibration | None) -> None:
    """``exclude=auto`` without calibration texts is refused before any export work."""
    if settings.auto and calibration is None:
        raise ConfigError("int8.exclude=auto measures each layer on held-out in-domain text: set "
                          "int8.calibration.texts=<.txt/.jsonl/.csv>, use a bundle built with it (task=bundle "
                          "records the chosen layers), or name the layers (int8.exclude=[2.ffn_out]) or none "
                          "(int8.exclude=[])")


def quantize_int8(fp32_path: Path, int8_path: Path, settings: Int8Settings | None = None,
                  calibration: Calibration | None = None, threads: int = 1) -> dict[str, Any]:
    """Write the int8 version of the fp32 ONNX graph ``fp32_path`` to ``int8_path`` (weights in
    ``<int8_path>.data``) and its record to ``int8.json`` beside it; returns the record.
    ``exclude=auto`` needs ``calibration`` (held-out corpus text; :func:`require_calibration`) and
    measures on ``threads`` threads."""
    import onnx

    settings = settings or Int8Settings()
    work = int8_path.parent / "work"
    layers = graph_layers(onnx.load(str(fp32_path), load_external_data=False).graph)
    record: dict[str, Any] = {"settings": settings.effective()}
    exclude = settings.exclude
    if settings.auto:
        assert calibration is not None, "require_calibration first"
        labels, sensitivity = auto_exclusions(fp32_path, layers, work, settings, calibration, threads)
        record.update(sensitivity=sensitivity, calibration={"texts": calibration.texts, "digest": calibration.digest})
        exclude = tuple(labels)
    excluded = select_layers(layers, exclude)
    record["excluded"] = [layer.label for layer in excluded]
    skipped = {layer.node for layer in excluded}
    with _quiet_quantizer():
        if settings.method == "blockwise":
            fast = {layer.node for layer in layers} - skipped
            _save(_blockwise(_load(fp32_path), settings, layers, fast), int8_path)
        else:
            fast_layers = [layer for layer in layers if layer.node not in skipped]
            model = _load(fp32_path)
            if skipped and settings.excluded_as == "blockwise":
                model = _blockwise(model, settings, layers, skipped)
            source = _save(_token_scaled(model, settings, fast_layers), work / "before_dynamic" / "model.onnx")
            _dynamic(source, int8_path, settings, [layer.node for layer in fast_layers])
    shutil.rmtree(work, ignore_errors=True)
    write_json(int8_path.parent / RECORD, record)
    return record


def read_record(int8_path: Path) -> dict[str, Any]:
    """The ``int8.json`` written beside an int8 graph by :func:`quantize_int8`."""
    return read_json(int8_path.parent / RECORD)
