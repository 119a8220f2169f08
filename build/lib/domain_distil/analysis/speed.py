"""Table 5's measurements: parameters, size and milliseconds per message, batch size 1, on a fixed
number of CPU threads.

Every measurement runs one message at a time (batch size 1, the serving case the paper times),
repeats the whole measurement ``repeats`` times after ``warmup`` untimed rounds, and reports the
median, so one-off stalls (page faults, a neighbour process) do not move the number. Besides fp32
PyTorch, an encoder can get two deployment variants, int8 dynamic quantization of its Linear
layers and ONNX Runtime, each with its agreement to fp32: the max |difference| of the last hidden
states over the real tokens of held-out texts, because a fast model that computes something else
is no use to the classifier heads on top.

The variants come from ``domain_distil.conversion``, the messages from ``analysis.messages``, and
``analysis.table5`` lays the rows out.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from domain_distil.analysis.encoders import EncoderSpec
from domain_distil.analysis.messages import synthetic_message, tokenized_messages
from domain_distil.conversion.int8 import int8_model
from domain_distil.conversion.onnx_export import ONNX_PACKAGES, onnx_runner
from domain_distil.conversion.runners import Inputs, Runner, torch_runner
from domain_distil.encoders import load_encoder


@dataclass
class SpeedRow:
    model: str
    variant: str  # fp32 | int8 | onnx
    params_m: float
    size_mb: float | None
    ms: dict[str, float | None] = field(default_factory=dict)  # "16", "64", ..., "realistic" -> median ms
    agreement: float | None = None  # max |embedding - fp32 embedding|; 0 for fp32 itself
    note: str = ""

    @property
    def available(self) -> bool:
        return not self.note.startswith("unavailable")


def count_params_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def state_dict_mb(model: torch.nn.Module) -> float:
    """Serialized size: for int8 this includes the packed weights, which ``parameters()`` misses."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 2**20


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread pool for the measurement and restore it afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def median_ms(runner: Runner, messages: Sequence[Inputs], repeats: int, warmup: int) -> float:
    """Median over ``repeats`` of the mean time per message over ``messages``, warm-up excluded."""
    for _ in range(warmup):
        for message in messages:
            runner(message)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for message in messages:
            runner(message)
        times.append((time.perf_counter() - start) * 1000.0 / len(messages))
    return float(statistics.median(times))


def max_abs_difference(reference: Runner, candidate: Runner, messages: Sequence[Inputs]) -> float:
    return float(max(np.abs(reference(m) - candidate(m)).max() for m in messages))


@dataclass(frozen=True)
class SpeedSettings:
    lengths: tuple[int, ...] = (16, 64, 128)
    repeats: int = 20
    warmup: int = 3
    threads: int = 1
    int8: bool = True
    onnx: bool = True
    variants_for: tuple[str, ...] | None = None  # encoder ids; None = all


def benchmark_encoder(
    spec: EncoderSpec,
    settings: SpeedSettings,
    realistic: Callable[[object], list[Inputs]],  # tokenizer -> messages
    agreement_texts: Sequence[str],
    onnx_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> list[SpeedRow]:
    """fp32 row, plus int8 and ONNX rows when enabled for this encoder."""
    model, tokenizer = load_encoder(spec.name_or_path)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max(settings.lengths) > limit:
        raise ValueError(f"speed.lengths: {max(settings.lengths)} tokens exceeds {spec.id}'s {limit} positions")
    rng = np.random.default_rng(0)
    fixed = {str(n): [synthetic_message(tokenizer, n, rng)] for n in settings.lengths}
    messages = {**fixed, "realistic": realistic(tokenizer)}
    held_out = tokenized_messages(tokenizer, agreement_texts, max(settings.lengths))
    params = count_params_m(model)
    reference = torch_runner(model)

    def timed(runner: Runner, name: str) -> dict[str, float | None]:
        out = {}
        for key, batch in messages.items():
            progress(f"{name}: {key}")
            out[key] = median_ms(runner, batch, settings.repeats, settings.warmup)
        return out

    rows = [SpeedRow(spec.id, "fp32", params, state_dict_mb(model), timed(reference, spec.id), 0.0)]
    if settings.variants_for is not None and spec.id not in settings.variants_for:
        return rows
    if settings.int8:
        try:
            quantized = int8_model(model)
        except (ImportError, RuntimeError, AttributeError) as error:
            rows.append(_unavailable(spec.id, "int8", params, messages, f"int8 quantization failed: {error}"))
        else:
            runner = torch_runner(quantized)
            rows.append(SpeedRow(
                f"{spec.id} (int8 dynamic)", "int8", params, state_dict_mb(quantized), timed(runner, f"{spec.id} int8"),
                max_abs_difference(reference, runner, held_out), "torch.ao quantize_dynamic, Linear",
            ))
    if settings.onnx:
        try:
            progress(f"{spec.id}: ONNX export")
            runner, size = onnx_runner(model, fixed[str(settings.lengths[0])][0], onnx_dir / f"{spec.id}.onnx", settings.threads)
        except ImportError as error:
            rows.append(_unavailable(spec.id, "onnx", params, messages, f"{error.name or error} not installed: pip install {ONNX_PACKAGES}"))
        except Exception as error:  # noqa: BLE001  the exporter raises many types; the row records it
            rows.append(_unavailable(spec.id, "onnx", params, messages, f"ONNX export failed: {type(error).__name__}: {error}"))
        else:
            rows.append(SpeedRow(
                f"{spec.id} (ONNX Runtime)", "onnx", params, size, timed(runner, f"{spec.id} onnx"),
                max_abs_difference(reference, runner, held_out), "onnxruntime CPU",
            ))
    return rows


def _unavailable(encoder_id: str, variant: str, params: float, messages: dict, reason: str) -> SpeedRow:
    label = {"int8": "int8 dynamic", "onnx": "ONNX Runtime"}[variant]
    return SpeedRow(f"{encoder_id} ({label})", variant, params, None, dict.fromkeys(messages), None, f"unavailable: {reason}")
