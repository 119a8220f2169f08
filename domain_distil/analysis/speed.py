"""Table 5: parameters and milliseconds per message, batch size 1, on a fixed number of CPU threads.

Every measurement runs one message at a time (batch size 1, the serving case the paper times),
repeats the whole measurement ``repeats`` times after ``warmup`` untimed rounds, and reports the
median, so one-off stalls (page faults, a neighbour process) do not move the number. Besides fp32
PyTorch, an encoder can get two deployment variants, int8 dynamic quantization of its Linear
layers and ONNX Runtime, each with its agreement to fp32: the max |difference| of the last hidden
states over the real tokens of held-out texts, because a fast model that computes something else
is no use to the classifier heads on top.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from domain_distil.analysis.encoders import EncoderSpec, load_encoder

Inputs = dict[str, torch.Tensor]
Runner = Callable[[Inputs], np.ndarray]
ONNX_PACKAGES = "onnxruntime onnx onnxscript"


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


def _special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence ([CLS] / [SEP], <s> / </s>).

    Found by encoding a probe with and without specials (fast tokenizers in transformers 5 have
    no ``build_inputs_with_special_tokens``)."""
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ValueError(f"cannot locate the body of {probe!r} in its encoding with special tokens: {full}")


def synthetic_message(tokenizer, length: int, rng: np.random.Generator) -> Inputs:
    """A message of exactly ``length`` tokens (specials included), body drawn from the vocabulary."""
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    if length <= n_special:
        raise ValueError(f"speed.lengths: {length} tokens leaves no room next to {n_special} special tokens")
    specials = set(tokenizer.all_special_ids)
    vocab = np.array([i for i in range(len(tokenizer)) if i not in specials])
    body = rng.choice(vocab, size=length - n_special).tolist()
    prefix, suffix = _special_frame(tokenizer)
    ids = prefix + body + suffix
    input_ids = torch.tensor([ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def tokenized_messages(tokenizer, texts: Sequence[str], max_length: int) -> list[Inputs]:
    """Each text as its own batch of one (no padding), truncated to ``max_length`` tokens."""
    out = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def read_texts(path: str | Path) -> list[str]:
    """Messages from a .txt (one per line), .jsonl (field ``text``) or .csv (column ``text``) file."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            texts = []
            for number, line in enumerate(handle, 1):
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                        raise ValueError(f"{path}:{number}: expected a JSON object with a string field 'text'")
                    texts.append(obj["text"])
        elif path.suffix == ".csv":
            reader = csv.DictReader(handle)
            if "text" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: expected a header row with a 'text' column, got {reader.fieldnames}")
            texts = [row["text"] for row in reader]
        else:
            texts = [line.rstrip("\n") for line in handle]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"{path}: no non-empty messages")
    return texts


def realistic_lengths(n: int, mu: float, sigma: float, max_length: int, min_length: int, seed: int) -> list[int]:
    """Token lengths ~ round(exp(Normal(mu, sigma))), clipped to [min_length, max_length]."""
    draws = np.random.default_rng(seed).lognormal(mu, sigma, size=n)
    return np.clip(np.rint(draws), min_length, max_length).astype(int).tolist()


def realistic_messages(
    tokenizer, texts: Sequence[str] | None, n: int, mu: float, sigma: float, max_length: int, seed: int
) -> list[Inputs]:
    """``n`` messages of realistic length: sampled from ``texts`` if given, else log-normal lengths."""
    rng = np.random.default_rng(seed)
    if texts:
        chosen = rng.choice(len(texts), size=n, replace=n > len(texts))
        return tokenized_messages(tokenizer, [texts[i] for i in chosen], max_length)
    floor = tokenizer.num_special_tokens_to_add(pair=False) + 1
    return [synthetic_message(tokenizer, length, rng) for length in realistic_lengths(n, mu, sigma, max_length, floor, seed)]


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread pool for the measurement and restore it afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_runner(model: torch.nn.Module) -> Runner:
    @torch.inference_mode()
    def run(inputs: Inputs) -> np.ndarray:
        return model(**inputs).last_hidden_state.float().numpy()

    return run


class _LastHidden(torch.nn.Module):
    """Export wrapper: two tensor inputs, one tensor output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def onnx_runner(model: torch.nn.Module, sample: Inputs, path: Path, threads: int) -> tuple[Runner, float]:
    """Export with ``torch.onnx.export`` (dynamic sequence length) and run with ONNX Runtime.

    Raises ImportError when onnxruntime / onnx / onnxscript are not installed.
    """
    import onnx  # noqa: F401  (the exporter needs it; fail here with a clear ImportError)
    import onnxruntime as ort

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
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: Inputs) -> np.ndarray:
        feeds = {"input_ids": inputs["input_ids"].numpy(), "attention_mask": inputs["attention_mask"].numpy()}
        return session.run(None, feeds)[0]

    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20  # + external data
    return run, size


def int8_model(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations quantized per call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


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
    model, tokenizer = load_encoder(spec)
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


def table5(rows: Sequence[SpeedRow], lengths: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    """Table 5's layout, extended: Model | Params (M) | ms at each length | realistic | agreement."""
    header = ["Model", "Params (M)", "Size (MB)", *(f"ms @{n}" for n in lengths), "ms realistic", "max |Δ| fp32", "Note"]
    body = []
    for row in rows:
        def ms(key: str, row: SpeedRow = row) -> str:
            value = row.ms.get(key)
            return "unavailable" if value is None else f"{value:.2f}"

        body.append([
            row.model, f"{row.params_m:.1f}", "–" if row.size_mb is None else f"{row.size_mb:.1f}",
            *(ms(str(n)) for n in lengths), ms("realistic"),
            "–" if row.agreement is None else f"{row.agreement:.2e}", row.note,
        ])
    return header, body
