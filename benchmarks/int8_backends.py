"""Which int8 path to serve: torchao vs ONNX Runtime's quantizer, latency and agreement to fp32.

For the demo teacher (multilingual-e5-small, 12 layers, from the cache ``python run.py`` fills) and
a 6-layer student cut from it (``modeling.student.build_student``, every other layer; an untrained
student computes exactly what a distilled one does per token), each candidate is timed at batch 1,
one thread, 32 and 128 tokens, and checked against the same model in fp32 PyTorch:

- ``fp32``: PyTorch fp32 (the baseline every ratio divides by);
- ``torch.ao``: ``torch.ao.quantization.quantize_dynamic`` (deprecated; what the project used before);
- ``torchao``: ``torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())``, eager;
- ``ort-fp32``: the fp32 ONNX export run by ONNX Runtime (``conversion.variants``, ``onnx``);
- ``ort-dyn``: ONNX Runtime ``quantize_dynamic`` of that export, one scale per weight tensor (the
  project's int8 path before block-wise);
- ``ort-dyn-pc``: the same with per-channel weight scales (``per_channel=True``);
- ``ort-dyn-pc-rr``: and 7-bit weights (``reduce_range=True``, no u8*s8 saturation without VNNI);
- ``ort-dyn-pc-rr-xffn``: and the FFN output MatMuls kept in fp32 (``nodes_to_exclude``);
- ``ort-block32``, ``ort-block16``: ONNX Runtime ``MatMulNBits`` 8-bit, int8 activations per block
  of 32 / 16 (accuracy level 4).

These are the single quantizer settings, each without token scaling or excluded layers
(``conversion.int8.Int8Settings``); the served default combines them and is compared with them in
``benchmarks/int8.py`` (which also prints the goal line).

Every ONNX Runtime candidate goes through ``conversion.variants.variant_runner`` (one intra-op
thread, ``ORT_ENABLE_ALL``), so it is built and run exactly as served. Not candidates, measured
while choosing (``docs/serving.md``): ``quant_pre_process`` (its symbolic shape inference fails on
the dynamo export; with it skipped, no faster), excluding other MatMul roles or whole first/last
layers (no better agreement than ``-xffn``), 4-bit ``MatMulNBits`` (worse agreement).

Agreement, on held-out demo-task texts (``cc_intent`` and ``td_tags``, English test split), encoded
in padded batches of 32 (the batched ONNX path): max |Δ| of the last hidden states over real tokens,
and head-prediction agreement: a logistic-regression head per task (one-vs-rest for the tags) is fit
on the fp32 mean-pooled embeddings of the train split, then applied to each candidate's test
embeddings; agreement is the share of decisions equal to fp32's.

The candidates alternate within each timed round, so load from other processes hits them alike.
Lines ``ratio <model> <candidate> @<n>`` are candidate ms / fp32 ms of the same model; the last
line names the CPU's int8 instructions.

    python benchmarks/int8_backends.py                       # 15 repeats, 200 texts per task
    python benchmarks/int8_backends.py --repeats 30 --teacher cache/teachers/me5_small-<hash>
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertForMaskedLM

from domain_distil.classification.features import pad_batch
from domain_distil.conversion.int8 import Int8Settings, int8_instructions
from domain_distil.conversion.runners import Inputs, Runner, torch_runner
from domain_distil.conversion.variants import variant_runner
from domain_distil.demo.data.generator import generate_demo_data
from domain_distil.modeling.student import StudentSpec, build_student

LENGTHS = (32, 128)
SLOW = 4.0  # x fp32: a candidate this slow is timed 3 rounds and not checked for agreement
# ONNX Runtime int8 candidates, one quantizer setting each (the served default: benchmarks/int8.py).
_PLAIN = {"token_scale": (), "exclude": ()}  # one activation scale per tensor, nothing excluded
ORT_INT8 = {
    "ort-dyn": Int8Settings(method="dynamic", per_channel=False, reduce_range=False, **_PLAIN),
    "ort-dyn-pc": Int8Settings(method="dynamic", per_channel=True, reduce_range=False, **_PLAIN),
    "ort-dyn-pc-rr": Int8Settings(method="dynamic", per_channel=True, reduce_range=True, **_PLAIN),
    "ort-dyn-pc-rr-xffn": Int8Settings(method="dynamic", per_channel=True, reduce_range=True, token_scale=(),
                                       exclude=("ffn_out",), excluded_as="fp32"),
    "ort-block32": Int8Settings(method="blockwise", block_size=32, exclude=()),
    "ort-block16": Int8Settings(method="blockwise", block_size=16, exclude=()),
}


def torch_ao_model(model: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def torchao_model(model: torch.nn.Module) -> torch.nn.Module:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    return quantized


def candidates(model: torch.nn.Module, folder: Path) -> dict[str, Runner | str]:
    """name -> runner, or the reason it is unavailable."""
    out: dict[str, Runner | str] = {"fp32": torch_runner(model)}
    builds: list[tuple[str, Callable[[], Runner]]] = [
        ("torch.ao", lambda: torch_runner(torch_ao_model(model))),
        ("torchao", lambda: torch_runner(torchao_model(model))),
        ("ort-fp32", lambda: variant_runner("onnx", model, folder, 1)[0]),
        *((name, lambda s=settings: variant_runner("int8", model, folder, 1, s)[0]) for name, settings in ORT_INT8.items()),
    ]
    for name, build in builds:
        try:
            out[name] = build()
        except Exception as error:  # noqa: BLE001  report the candidate as unavailable, keep the others
            out[name] = f"{type(error).__name__}: {error}"
    return out


def time_candidates(runners: dict[str, Runner], messages: dict[int, Inputs], repeats: int,
                    reference: str = "fp32") -> dict[str, dict[int, float]]:
    """Median ms per message; candidates alternate within each round, after one untimed warm-up
    round. A candidate over ``SLOW`` x the ``reference`` at every length after 3 rounds stops there:
    the median of 3 already shows it out of the race, and its rounds would dominate the run."""
    times: dict[str, dict[int, list[float]]] = {name: {n: [] for n in messages} for name in runners}
    active = dict(runners)
    for round_ in range(repeats + 1):
        for n, message in messages.items():
            for name, runner in active.items():
                start = time.perf_counter()
                runner(message)
                if round_:
                    times[name][n].append((time.perf_counter() - start) * 1000)
        if round_ == 3:
            base = {n: statistics.median(times[reference][n]) for n in messages}
            active = {name: r for name, r in active.items()
                      if not all(statistics.median(times[name][n]) > SLOW * base[n] for n in messages)}
    return {name: {n: statistics.median(v) for n, v in per.items()} for name, per in times.items()}


def embed(runner: Runner, tokenizer, texts: list[str], pad_id: int) -> tuple[np.ndarray, float]:
    """Mean-pooled embeddings (padded batches of 32) and the token states, for max |Δ|."""
    pooled, states = [], []
    for start in range(0, len(texts), 32):
        ids = tokenizer(texts[start : start + 32], truncation=True, max_length=128)["input_ids"]
        input_ids, mask = pad_batch([list(i) for i in ids], pad_id)
        hidden = runner({"input_ids": input_ids, "attention_mask": mask})
        keep = mask.numpy()[..., None].astype(np.float32)
        pooled.append((hidden * keep).sum(1) / keep.sum(1))
        states.append([hidden[row, : int(mask[row].sum())] for row in range(len(ids))])
    return np.concatenate(pooled), [s for batch in states for s in batch]


def fit_heads(x: np.ndarray, y: np.ndarray, steps: int = 200) -> Callable[[np.ndarray], np.ndarray]:
    """One-vs-rest logistic regression (L-BFGS, standardised inputs): features -> 0/1 decisions."""
    logits = fit_probe(x, y, steps)
    return lambda z: logits(z) > 0


def fit_probe(x: np.ndarray, y: np.ndarray, steps: int = 200) -> Callable[[np.ndarray], np.ndarray]:
    """The logistic regression of :func:`fit_heads`: features -> logits (a decision is logit > 0)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    features = torch.tensor((x - mean) / std)
    targets = torch.tensor(y, dtype=torch.float32)
    linear = torch.nn.Linear(x.shape[1], y.shape[1])
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(features), targets)
        loss = loss + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda z: linear(torch.tensor((z - mean) / std)).detach().numpy()


def demo_tasks(n_texts: int, root: Path) -> dict[str, dict[str, tuple[list[str], np.ndarray]]]:
    """task -> split -> (texts, 0/1 label matrix), English, ``n_texts`` per split."""
    import json

    generate_demo_data(root, languages=["eng"], corpus_mb_per_lang=0.001, general_mb_per_lang=0.001,
                       n_train=n_texts, n_val=1, n_test=n_texts)
    out = {}
    for task in ("cc_intent", "td_tags"):
        rows = [json.loads(line) for line in (root / "tasks" / f"{task}.jsonl").read_text().splitlines()]
        rows = [r for r in rows if r.get("source", "natural") == "natural"]
        labels = sorted({r["label"] for r in rows}) if task == "cc_intent" else sorted({t for r in rows for t in r["labels"]})
        out[task] = {}
        for split in ("train", "test"):
            chosen = [r for r in rows if r["split"] == split]
            y = np.array([[(r["label"] == lab) if task == "cc_intent" else (lab in r["labels"]) for lab in labels]
                          for r in chosen], dtype=np.float32)
            out[task][split] = ([r["text"] for r in chosen], y[:, :1] if task == "cc_intent" else y)
    return out


def agreement(runners: dict[str, Runner], tokenizer, tasks: dict, pad_id: int) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {name: {"max_abs_diff": 0.0} for name in runners}
    for task, splits in tasks.items():
        train_texts, y_train = splits["train"]
        test_texts, _ = splits["test"]
        head = fit_heads(embed(runners["fp32"], tokenizer, train_texts, pad_id)[0], y_train)
        ref_pooled, ref_states = embed(runners["fp32"], tokenizer, test_texts, pad_id)
        ref_decisions = head(ref_pooled)
        for name, runner in runners.items():
            pooled, states = embed(runner, tokenizer, test_texts, pad_id)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(states, ref_states, strict=True))
            result[name]["max_abs_diff"] = max(result[name]["max_abs_diff"], diff)
            result[name][task] = float((head(pooled) == ref_decisions).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, default=None, help="teacher folder (default: cache/teachers/me5_small-*)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--texts", type=int, default=200, help="train and test texts per demo task")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    teacher_dir = args.teacher or next(iter(sorted(Path("cache/teachers").glob("me5_small-*"))), None)
    if teacher_dir is None or not (teacher_dir / "config.json").is_file():
        raise SystemExit("no demo teacher folder: run `python run.py` once (it converts it into cache/teachers) "
                         "or pass --teacher <folder>")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    pad_id = tokenizer.pad_token_id or 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teacher_mlm = BertForMaskedLM.from_pretrained(teacher_dir).eval()
    models = {"teacher": teacher_mlm.bert.eval(),
              "student": build_student(teacher_mlm, StudentSpec(num_layers=6)).distilbert.eval()}
    rng = np.random.default_rng(0)
    special = set(tokenizer.all_special_ids)
    vocab = np.array([i for i in range(len(tokenizer)) if i not in special])
    messages = {}
    for n in LENGTHS:
        ids = [tokenizer.cls_token_id, *rng.choice(vocab, n - 2).tolist(), tokenizer.sep_token_id]
        messages[n] = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, n, dtype=torch.long)}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tasks = demo_tasks(args.texts, Path(tmp) / "data")
        for model_name, model in models.items():
            built = candidates(model, Path(tmp) / model_name)
            runners = {k: v for k, v in built.items() if not isinstance(v, str)}
            for name, reason in built.items():
                if isinstance(reason, str):
                    print(f"{model_name} {name}: unavailable: {reason}")
            ms = time_candidates(runners, messages, args.repeats)
            contenders = {k: r for k, r in runners.items() if ms[k][128] <= SLOW * ms["fp32"][128]}
            agree = agreement(contenders, tokenizer, tasks, pad_id)
            results[model_name] = {"ms": ms, "agreement": agree}
            for name in runners:
                a = agree.get(name)
                check = (f"  max|Δ| {a['max_abs_diff']:.3g}  agree cc_intent {a['cc_intent']:.4f} td_tags {a['td_tags']:.4f}"
                         if a else f"  agreement not measured: over {SLOW:g}x fp32")
                print(f"{model_name:8s} {name:18s} " + " ".join(f"@{n}: {ms[name][n]:7.2f} ms" for n in LENGTHS) + check,
                      flush=True)
    for model_name, entry in results.items():
        for name in entry["ms"]:
            if name != "fp32":
                for n in LENGTHS:
                    print(f"ratio {model_name} {name} @{n}: {entry['ms'][name][n] / entry['ms']['fp32'][n]:.3f}")
    teacher_fp32 = results["teacher"]["ms"]["fp32"][128]
    for name in results["student"]["ms"]:
        print(f"ratio student {name} / teacher fp32 @128: {results['student']['ms'][name][128] / teacher_fp32:.3f}")
    print(f"CPU int8 instructions: {int8_instructions()} (the default int8 and the goal line: benchmarks/int8.py)")


if __name__ == "__main__":
    main()
