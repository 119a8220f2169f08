"""Table 5's measurements: parameters, size and milliseconds per message, batch size 1 (the serving
case the paper times), on a fixed number of CPU threads.

The median over ``repeats`` keeps one-off stalls (page faults, a neighbour process) out of the
number. The int8 and ONNX Runtime variants (the code serving runs, ``conversion.variants``) also
report their agreement with fp32 (max |difference| of the last hidden states on held-out texts),
because a fast model that computes something else is no use to the classifier heads on top.
"""

from __future__ import annotations

import io
import shutil
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
from domain_distil.common.cpu import CPUINFO
from domain_distil.conversion.int8 import Int8Settings
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.runners import Inputs, Runner, torch_runner
from domain_distil.conversion.variants import variant_runner
from domain_distil.encoders import load_encoder

VARIANT_ORDER = ("int8", "onnx")
LABELS = {"int8": "int8", "onnx": "ONNX Runtime"}


def variant_note(variant: str, int8: Int8Settings) -> str:
    """The Note column: which runtime, and for int8 the quantizer settings that made the graph."""
    if variant != "int8":
        return "onnxruntime CPU"
    settings = {k: v for k, v in int8.effective().items() if k != "method" and v not in ([], ())}
    return f"onnxruntime int8 {int8.method} (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"


@dataclass
class SpeedRow:
    model: str
    variant: str  # fp32 | int8 | onnx (conversion.variants.VARIANTS)
    params_m: float
    size_mb: float | None
    ms: dict[str, float | None] = field(default_factory=dict)  # "16", "64", ..., "realistic" -> median ms
    agreement: float | None = None  # max |embedding - fp32 embedding|; 0 for fp32 itself
    note: str = ""

    @property
    def available(self) -> bool:
        return not self.note.startswith("unavailable")


def state_dict_mb(model: torch.nn.Module) -> float:
    """Serialized size of the PyTorch weights."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 2**20


def machine_identity() -> dict[str, str]:
    """What a single-thread latency depends on besides the model: the CPU model, torch, Python.
    The CPU model comes from ``/proc/cpuinfo``: ``platform.processor()`` is empty on many Linux systems."""
    import platform

    cpu = ""
    if CPUINFO.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in CPUINFO.read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"cpu": cpu or platform.processor(), "machine": platform.machine(), "torch": torch.__version__,
            "python": platform.python_version()}


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
    int8_settings: Int8Settings = field(default_factory=Int8Settings)  # the ``int8`` group, as served
    int8_calibration: tuple[str, ...] = ()  # held-out corpus text for int8.exclude=auto (int8.calibration)


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
    params = sum(p.numel() for p in model.parameters()) / 1e6
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
    # A fresh export per run: an output folder reused for another model under the same id must not
    # time the old graph.
    shutil.rmtree(onnx_dir / spec.id, ignore_errors=True)
    # Outside the try below: a bad calibration file or tokenizer is a configuration error, not an
    # unavailable variant.
    calibration = (Calibration.from_texts(tokenizer, settings.int8_calibration)
                   if settings.int8 and settings.int8_settings.auto and settings.int8_calibration else None)
    for variant in VARIANT_ORDER:
        if not getattr(settings, variant):
            continue
        name = f"{spec.id} ({LABELS[variant]})"
        try:
            progress(f"{spec.id}: {variant} conversion")
            runner, size = variant_runner(variant, model, onnx_dir / spec.id, settings.threads,
                                          int8=settings.int8_settings, calibration=calibration)
        except Exception as error:  # noqa: BLE001  the exporter raises many types; the row records it
            reason = (str(error) if isinstance(error, ImportError)
                      else f"{variant} conversion failed: {type(error).__name__}: {error}")
            rows.append(SpeedRow(name, variant, params, None, dict.fromkeys(messages), None, f"unavailable: {reason}"))
            continue
        rows.append(SpeedRow(
            name, variant, params, size, timed(runner, f"{spec.id} {variant}"),
            max_abs_difference(reference, runner, held_out), variant_note(variant, settings.int8_settings),
        ))
    return rows
