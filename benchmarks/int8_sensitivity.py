"""Where int8 loses agreement with fp32: per-layer and per-block sensitivity, activation ranges, margins.

The trimmed me5 student of ``int8.py`` / ``trim.py``, measured on held-out corpus sentences only
(demo in-domain corpus lines that are not task texts, after the lines ``int8.py`` calibrates on;
the tasks' test splits are never read). Probe heads (``int8_backends.fit_probe``: logistic
regression per task on fp32 mean-pooled features of the task *train* split) give decisions on those
sentences, so agreement here is label-free. Four parts:

1. activation ranges of every linear layer's input (fp32 PyTorch, one sentence at a time): median
   largest |value|, its ratio to the tensor's RMS, where it sits (first / middle / last token) and
   in which channel, and the relative error of 8-bit asymmetric quantization of that input with one
   scale per tensor (what ``quantize_dynamic`` does) and with one scale per token;
2. sensitivity: the graph with only that layer int8 (ONNX Runtime ``quantize_dynamic``, per-channel
   weights), plain and with token scaling (``conversion.int8_layers.token_scale``): pooled error
   (``int8_auto.pooled_error``: per feature, in units of its spread across sentences, RMS) and
   probe agreement; then only one block int8 (plain);
3. additivity: the whole model int8 against the root of the summed squared single-layer errors;
4. margins: with the whole model int8 (plain, and the default), how far the flipped decisions' fp32
   logits sit from the threshold, against all decisions.

    python benchmarks/int8_sensitivity.py        # about 2.5 minutes on 2 cores (shared)

The last line names the most sensitive layer of the plain path and its share of the summed squared
error.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from int8 import classification_data, corpus_lines, student_calibration, task_texts  # benchmarks/
from int8_backends import demo_tasks, embed, fit_probe

from domain_distil.conversion.int8 import Int8Settings, int8_instructions
from domain_distil.conversion.int8_auto import Calibration, pooled_error, pooled_outputs
from domain_distil.conversion.int8_layers import graph_layers, token_scale
from domain_distil.conversion.runners import Runner, onnx_session_runner, torch_runner
from domain_distil.conversion.variants import int8_graph, onnx_graph

Probes = dict[str, Callable[[np.ndarray], np.ndarray]]
CALIBRATION_LINES = 26  # per language: what int8.py calibrates the default on (--calibration-per-language)


def quantize_only(source: Path, target: Path, nodes: list[str]) -> Path:
    """``source`` with the MatMuls ``nodes`` quantized by ``quantize_dynamic`` (per-channel int8
    weights, 8-bit, one uint8 activation scale per tensor), the others left fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=False,
                     weight_type=QuantType.QInt8, nodes_to_quantize=nodes, use_external_data_format=True)
    return target


def relative_quantization_error(x: torch.Tensor, per_token: bool) -> float:
    """RMS error / RMS of 8-bit asymmetric quantization of ``x`` (n, d), zero kept exact."""
    low = (x.amin(-1, keepdim=True) if per_token else x.min()).clamp(max=0)
    high = (x.amax(-1, keepdim=True) if per_token else x.max()).clamp(min=0)
    scale = (high - low) / 255
    zero = torch.round(-low / scale)
    restored = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    return float((restored - x).pow(2).mean().sqrt() / x.pow(2).mean().sqrt())


def activation_ranges(student: torch.nn.Module, calibration: Calibration) -> dict[str, str]:
    """Linear module name -> one line about its input over the sentences (one at a time)."""
    linears = {name: module for name, module in student.named_modules() if isinstance(module, torch.nn.Linear)}
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in linears}
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: seen[name].append(args[0][0].detach()))
             for name, module in linears.items()]
    try:
        with torch.inference_mode():
            for batch in calibration.batches:
                for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
                    n = int(mask.sum())
                    student(input_ids=ids[None, :n], attention_mask=mask[None, :n])
    finally:
        for hook in hooks:
            hook.remove()
    lines = {}
    for name, inputs in seen.items():
        peaks, ratios, where, channels = [], [], Counter(), Counter()
        for x in inputs:
            token, channel = divmod(int(x.abs().argmax()), x.shape[1])
            peaks.append(float(x.abs().max()))
            ratios.append(peaks[-1] / float(x.pow(2).mean().sqrt()))
            where["first" if token == 0 else "last" if token == x.shape[0] - 1 else "middle"] += 1
            channels[channel] += 1
        channel, count = channels.most_common(1)[0]
        per_tensor = statistics.median(relative_quantization_error(x, False) for x in inputs)
        per_token = statistics.median(relative_quantization_error(x, True) for x in inputs)
        lines[name] = (f"max|x| {statistics.median(peaks):6.2f} ({statistics.median(ratios):5.1f}x RMS) at "
                       f"first/middle/last {where['first']}/{where['middle']}/{where['last']}, channel {channel} "
                       f"{count}/{len(inputs)}; 8-bit error per tensor {per_tensor:.3f}, per token {per_token:.3f}")
    return lines


def measure(runner: Runner, reference: np.ndarray, calibration: Calibration, probes: Probes) -> tuple[float, str]:
    """(pooled error, probe agreement per task as text) of ``runner`` on the sentences."""
    pooled = pooled_outputs(runner, calibration)
    agree = "  ".join(f"{task} {float(((probe(pooled) > 0) == (probe(reference) > 0)).mean()):.3f}"
                      for task, probe in probes.items())
    return pooled_error(reference, pooled), agree


def margins(name: str, runner: Runner, reference: np.ndarray, calibration: Calibration, probes: Probes) -> None:
    pooled = pooled_outputs(runner, calibration)
    for task, probe in probes.items():
        before, after = probe(reference), probe(pooled)
        flipped = (before > 0) != (after > 0)
        near = float((np.abs(before) < 1).mean())
        flips = np.abs(before[flipped])
        print(f"  {name:<8} {task:<9} {int(flipped.sum())} of {flipped.size} decisions flip; |fp32 logit| of "
              f"the flips: median {np.median(flips) if flips.size else float('nan'):.2f}, max "
              f"{flips.max() if flips.size else float('nan'):.2f}; all decisions: median {np.median(np.abs(before)):.2f}, "
              f"{100 * near:.1f} % under 1; |logit change| median {np.median(np.abs(after - before)):.2f}")


def main() -> None:
    from transformers import AutoTokenizer
    from trim import me5_teacher, student_ids  # benchmarks/: the demo teacher and corpus

    from domain_distil.modeling.student import StudentSpec, build_student
    from domain_distil.modeling.vocab_trim import trim_masked_lm

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(__file__).resolve().parent.parent / "cache")
    parser.add_argument("--sentences-per-language", type=int, default=40)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(1)
    started = time.perf_counter()
    teacher, kept, teacher_dir = me5_teacher(args.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    student = trim_masked_lm(build_student(teacher, StudentSpec(num_layers=6)), kept).base_model.eval()
    corpus_dir = args.cache_dir / "benchmarks" / "trim_demo_data" / "in_domain"
    with tempfile.TemporaryDirectory() as tmp:
        tasks = demo_tasks(200, Path(tmp) / "probe_data")
        # Every demo task text (the probes', int8.py's F1 splits, the corpus' own task files) is left out.
        held_out = task_texts(Path(tmp) / "probe_data", classification_data(Path(tmp) / "f1_data"), corpus_dir.parent)
        # After the lines int8.py calibrates on, so the default's choice is not measured on its own texts.
        sentences = corpus_lines(corpus_dir, held_out, args.sentences_per_language, skip=CALIBRATION_LINES)
        calibration = student_calibration(tokenizer, kept, sentences)
        fp32 = student_ids(torch_runner(student), kept)
        probes = {task: fit_probe(embed(fp32, tokenizer, splits["train"][0], tokenizer.pad_token_id)[0], splits["train"][1])
                  for task, splits in tasks.items()}
        graph = onnx_graph(student, Path(tmp) / "variants")
        model = onnx.load(str(graph))
        layers = graph_layers(model.graph)
        scaled_path = Path(tmp) / "token_scaled" / "model.onnx"
        scaled_path.parent.mkdir(parents=True)
        onnx.save_model(token_scale(model, {layer.node for layer in layers}), str(scaled_path),
                        save_as_external_data=True, location="model.onnx.data")
        reference = pooled_outputs(onnx_session_runner(graph, 1), calibration)
        ranges = activation_ranges(student, calibration)
        # The export keeps the modules' order (tests/test_conversion.py checks it on BERT weights).
        names = dict(zip([layer.label for layer in layers],
                         [name for name, m in student.named_modules() if isinstance(m, torch.nn.Linear)], strict=True))
        print(f"{len(sentences)} held-out corpus sentences; CPU int8 instructions: {int8_instructions()}")
        print("1-2. per linear layer: only it int8 (plain | token-scaled), pooled error and probe agreement; its input")
        plain_errors = {}
        for layer in layers:
            out = Path(tmp) / "only" / layer.label
            plain, plain_agree = measure(onnx_session_runner(quantize_only(graph, out / "plain.onnx", [layer.node]), 1),
                                         reference, calibration, probes)
            scaled, _ = measure(onnx_session_runner(quantize_only(scaled_path, out / "scaled.onnx", [layer.node]), 1),
                                reference, calibration, probes)
            plain_errors[layer.label] = plain
            print(f"  {layer.label:<11} plain {plain:.4f} ({plain_agree}) | token-scaled {scaled:.4f} | "
                  f"{names[layer.label]}: {ranges[names[layer.label]]}", flush=True)
        print("   only one block int8 (plain):")
        for block in sorted({layer.block for layer in layers}):
            nodes = [layer.node for layer in layers if layer.block == block]
            error, agree = measure(onnx_session_runner(quantize_only(graph, Path(tmp) / "block" / f"{block}.onnx", nodes), 1),
                                   reference, calibration, probes)
            print(f"  block {block}: pooled error {error:.4f} ({agree})", flush=True)
        whole = onnx_session_runner(quantize_only(graph, Path(tmp) / "whole" / "plain.onnx",
                                                  [layer.node for layer in layers]), 1)
        whole_error, whole_agree = measure(whole, reference, calibration, probes)
        summed = float(np.sqrt(sum(e ** 2 for e in plain_errors.values())))
        print(f"3. whole model int8 (plain): pooled error {whole_error:.4f} ({whole_agree}); root of summed squared "
              f"single-layer errors {summed:.4f}")
        print("4. margins on the sentences (whole model int8):")
        margins("plain", whole, reference, calibration, probes)
        calibrate = student_calibration(tokenizer, kept, corpus_lines(corpus_dir, held_out, CALIBRATION_LINES))
        default = onnx_session_runner(int8_graph(student, Path(tmp) / "variants", Int8Settings(), calibrate), 1)
        margins("default", default, reference, calibration, probes)
    worst = max(plain_errors, key=plain_errors.get)
    share = plain_errors[worst] ** 2 / sum(e ** 2 for e in plain_errors.values())
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"most sensitive layer (plain dynamic): {worst} ({names[worst]}), {100 * share:.0f} % of the summed squared error")


if __name__ == "__main__":
    main()
