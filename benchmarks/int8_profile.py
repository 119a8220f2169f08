"""Where the int8 student's time goes: ONNX Runtime's per-operator profile, int8 against fp32.

The demo teacher (multilingual-e5-small) and a 6-layer student cut from it, exported and quantized
exactly as served (``conversion.variants``: fp32 ONNX and the default ``int8`` settings, whose
``exclude=auto`` is calibrated on demo in-domain corpus sentences: ``demo_corpus``), run by
ONNX Runtime with its profiler on one thread, batch 1, ``--tokens`` random tokens, ``--runs``
runs after ``--warmup``, the two graphs alternating run by run. Per graph: kernel milliseconds per run by operator type, the time of the
weight matrix products and of everything else. In the int8 graph the weight products are the
quantized ones (``DynamicQuantizeMatMul``, ``MatMulIntegerToFloat``, ``MatMulInteger``, activation
quantization included, and the excluded layers' ``MatMulNBits``; the token scaling's element-wise
nodes count as everything else); its fp32 ``MatMul``/``FusedMatMul`` nodes are attention's two activation
products, which the fp32 graph runs alike, so the fp32 graph's weight products are its
``MatMul``/``FusedMatMul`` time minus the int8 graph's. Their ratio is the int8 speed-up this CPU's
instructions give (``conversion.int8.int8_instructions``); everything else is what int8 cannot
shrink.

    python benchmarks/int8_profile.py                 # 128 tokens, 25 runs
    python benchmarks/int8_profile.py --tokens 32

The last line is the int8 / fp32 matrix-product time ratio.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from int8 import corpus_lines, task_texts  # benchmarks/
from transformers import AutoTokenizer, BertForMaskedLM

from domain_distil.conversion.int8 import Int8Settings, int8_instructions
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.runners import UNFUSED
from domain_distil.conversion.variants import int8_graph, onnx_graph
from domain_distil.demo.data.generator import generate_demo_data
from domain_distil.modeling.student import StudentSpec, build_student

# The excluded layers of the default int8 are block-wise (MatMulNBits): weight products too.
GEMM_INT8 = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "MatMulNBits"}
GEMM_FP32 = {"MatMul", "FusedMatMul", "Gemm"}


def operator_ms(graphs: dict[str, Path], feed: dict[str, np.ndarray], runs: int, warmup: int,
                folder: Path) -> dict[str, dict[str, float]]:
    """Per graph: kernel milliseconds per run by operator type, over the ``runs`` runs that follow
    ``warmup`` untimed ones in the same profiled session (its first runs allocate). The graphs
    alternate run by run, so a change in the machine's speed during the benchmark hits them alike."""
    import onnxruntime as ort

    sessions = {}
    for name, graph in graphs.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / f"profile_{name}")
        sessions[name] = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"],
                                              disabled_optimizers=UNFUSED)  # as served (conversion/runners.py)
    for _ in range(warmup + runs):
        for session in sessions.values():
            session.run(None, feed)
    out = {}
    for name, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        run_ends = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
        if len(run_ends) != warmup + runs:
            raise SystemExit(f"the {name} profile holds {len(run_ends)} runs, expected {warmup + runs}")
        timed_from = run_ends[warmup - 1] if warmup else 0
        totals: dict[str, float] = collections.defaultdict(float)
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= timed_from:
                totals[event["args"]["op_name"]] += event["dur"] / 1000 / runs
        out[name] = dict(totals)
    return out


def demo_corpus(folder: Path, per_language: int = 26) -> list[str]:
    """Held-out in-domain sentences for the default int8's ``exclude=auto``: the first lines of each
    language of a freshly generated demo corpus that are no task text (``benchmarks/int8.py``'s rule)."""
    root = folder / "demo_data"
    generate_demo_data(root, seed=0, corpus_mb_per_lang=0.02, n_train=10, n_val=10, n_test=10)
    return corpus_lines(root / "in_domain", task_texts(root), per_language)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, default=None, help="teacher folder (default: cache/teachers/me5_small-*)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    teacher_dir = args.teacher or next(iter(sorted(Path("cache/teachers").glob("me5_small-*"))), None)
    if teacher_dir is None or not (teacher_dir / "config.json").is_file():
        raise SystemExit("no demo teacher folder: run `python run.py` once or pass --teacher <folder>")
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teacher = BertForMaskedLM.from_pretrained(teacher_dir).eval()
    student = build_student(teacher, StudentSpec(num_layers=6)).base_model.eval()
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1000, teacher.config.vocab_size, (1, args.tokens)).astype(np.int64),
            "attention_mask": np.ones((1, args.tokens), dtype=np.int64)}
    with tempfile.TemporaryDirectory() as tmp:
        calibration = Calibration.from_texts(AutoTokenizer.from_pretrained(teacher_dir), demo_corpus(Path(tmp)))
        graphs = {"fp32": onnx_graph(student, Path(tmp)), "int8": int8_graph(student, Path(tmp), Int8Settings(),
                                                                                calibration)}
        ms = operator_ms(graphs, feed, args.runs, args.warmup, Path(tmp))
    attention = sum(t for op, t in ms["int8"].items() if op in GEMM_FP32)
    gemm = {"int8": sum(t for op, t in ms["int8"].items() if op in GEMM_INT8),
            "fp32": sum(t for op, t in ms["fp32"].items() if op in GEMM_FP32) - attention}
    for name, per_op in ms.items():
        total = sum(per_op.values())
        print(f"{name}: {total:.2f} ms of kernels per run at {args.tokens} tokens; weight matrix products "
              f"{gemm[name]:.2f} ms ({100 * gemm[name] / total:.0f} %), everything else {total - gemm[name]:.2f} ms")
        for op, t in sorted(per_op.items(), key=lambda item: -item[1])[:10]:
            print(f"  {op:<26} {t:6.2f} ms  {100 * t / total:5.1f} %")
    print(f"CPU int8 instructions: {int8_instructions()}")
    print(f"int8 / fp32 weight matrix-product time: {gemm['int8'] / gemm['fp32']:.3f}")


if __name__ == "__main__":
    main()
