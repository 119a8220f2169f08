"""The GPU checks behind ``benchmarks/gpu_check.sh`` (one recent GPU, under 8 minutes in all).

    python benchmarks/gpu_check.py throughput   # bf16-mixed distillation of an mBERT-shaped teacher
    python benchmarks/gpu_check.py resume       # exact mid-epoch resume on the GPU
    python benchmarks/gpu_check.py classify     # one task=classify job through run.py on the GPU
    python benchmarks/gpu_check.py --dry-run    # no GPU: parse, build the models on the meta device, print FLOPs

The teacher is ``BertForMaskedLM(BertConfig(vocab_size=119547))``: bert-base-multilingual-cased's
shape (12 x 768, FFN 3072, 119,547 ids), random weights, built from the config in code, so nothing
is downloaded. The student is the reference 6-layer Distil* student built from it.

MFU (model FLOPs utilisation) = tokens/s x FLOPs per token / the GPU's dense bf16 peak, where

    FLOPs per token = F(teacher) + 3 F(student)        (teacher: forward only; student: forward + backward)
    F(model)        = 2 x (weights of every nn.Linear, MLM vocabulary projection included)
                      + 4 x layers x sequence length x hidden      (attention scores and weighted sum)

the usual 2-FLOPs-per-multiply-add count with backward = 2 x forward; embedding look-ups, norms,
softmax and the losses are left out, so MFU is slightly understated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MBERT_VOCAB = 119547
# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets; matched in
# order against torch.cuda.get_device_name(), so the more specific names come first.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
]


# ------------------------------------------------------------------------------------ models, FLOPs
def mbert_shaped_teacher(device: str | torch.device = "cpu"):
    """A random masked LM with bert-base-multilingual-cased's dimensions (config only, no download)."""
    from transformers import BertConfig, BertForMaskedLM

    with torch.device(device):
        return BertForMaskedLM(BertConfig(vocab_size=MBERT_VOCAB))


def reference_student(teacher):
    """The paper's 6-layer student, initialised from teacher layers [0, 2, 4, 7, 9, 11]."""
    from domain_distil.modeling.student import StudentSpec, build_student

    return build_student(teacher, StudentSpec())


def linear_weights(model: nn.Module) -> int:
    return sum(module.weight.numel() for module in model.modules() if isinstance(module, nn.Linear))


def forward_flops_per_token(model: nn.Module, layers: int, hidden: int, seq_len: int) -> int:
    return 2 * linear_weights(model) + 4 * layers * seq_len * hidden


def distill_flops_per_token(teacher, student, seq_len: int) -> int:
    """FLOPs of one distillation token: teacher forward + student forward and backward (see the docstring)."""
    t, s = teacher.config, student.config
    teacher_fwd = forward_flops_per_token(teacher, t.num_hidden_layers, t.hidden_size, seq_len)
    student_fwd = forward_flops_per_token(student, s.n_layers, s.dim, seq_len)
    return teacher_fwd + 3 * student_fwd


def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for name, peak in PEAK_BF16:
        if name in device_name:
            return peak
    return None


def mfu(tokens_per_sec: float, flops_per_token: int, peak: float | None) -> float | None:
    return None if not peak else tokens_per_sec * flops_per_token / peak


# ------------------------------------------------------------------------------------ checks
def _random_batches(vocab: int, n: int, batch_size: int, seq_len: int) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (batch_size, seq_len), generator=generator)
        ids[:, 0], ids[:, -1] = 2, 3
        batches.append({"input_ids": ids, "lengths": torch.full((batch_size,), seq_len),
                        "n_tokens": batch_size * seq_len})
    return batches


def check_throughput(args: argparse.Namespace) -> dict:
    """bf16-mixed distillation steps under Lightning with the project's TokenThroughput callback."""
    from torch.utils.data import DataLoader

    from callbacks.throughput import TokenThroughput
    from lightning_modules.distillation import DistillationModule

    torch.manual_seed(0)
    teacher = mbert_shaped_teacher("cuda" if args.accelerator == "gpu" else "cpu")
    student = reference_student(teacher)
    module = DistillationModule(
        student=student, teacher=teacher, token_counts=torch.ones(MBERT_VOCAB),
        special_token_ids=[0, 1, 2, 3, 4], mask_token_id=4, pad_token_id=0,
        optimizer=lambda params: torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6),
    )
    meter = TokenThroughput(window_steps=args.window)
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision="bf16-mixed", max_steps=args.steps,
                        gradient_clip_val=5.0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[meter],
                        use_distributed_sampler=False, default_root_dir=args.out)
    batches = _random_batches(MBERT_VOCAB, args.steps, args.batch_size, args.seq_len)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    steady = statistics.median(meter.history[1:]) if len(meter.history) > 1 else meter.run_average
    flops = distill_flops_per_token(teacher, student, args.seq_len)
    name = torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu"
    peak = peak_flops(name, args.peak_tflops)
    util = mfu(steady, flops, peak)
    result = {
        "device": name, "precision": "bf16-mixed", "batch_size": args.batch_size, "seq_len": args.seq_len,
        "steps": args.steps, "tokens_per_sec_steady": round(steady), "tokens_per_sec_run_average": round(meter.run_average),
        "flops_per_token": flops, "peak_flops": peak, "mfu": None if util is None else round(util, 4),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.accelerator == "gpu" else None,
    }
    print(f"throughput: {steady:,.0f} tokens/s (median window after the first; whole-run average "
          f"{meter.run_average:,.0f}), {flops / 1e9:.2f} GFLOPs/token, "
          f"MFU {'unknown (pass --peak-tflops)' if util is None else f'{100 * util:.1f}%'} on {name}")
    return result


def _tiny_corpus(teacher_dir: Path, root: Path) -> Path:
    from transformers import AutoTokenizer

    from domain_distil.corpus.reader import discover_files
    from domain_distil.corpus.shards import ShardSettings, build_corpus

    words = "my order refund delivery account password card payment help cancel change track package".split()
    generator = torch.Generator().manual_seed(0)
    (root / "text").mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(160):
        n = int(torch.randint(12, 40, (1,), generator=generator))
        lines.append(" ".join(words[int(i)] for i in torch.randint(len(words), (n,), generator=generator)))
    (root / "text" / "eng.txt").write_text("\n".join(lines) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    return build_corpus(discover_files(root / "text"), tokenizer, root / "cache", ShardSettings(max_seq_length=64))


class _StopAt(L.Callback):
    """Stops the fit after ``step`` optimizer steps (an interruption mid-epoch)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def check_resume(args: argparse.Namespace) -> dict:
    """Uninterrupted run vs. stopped mid-epoch and resumed from its checkpoint: same weights."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from tiny_models import build_tiny_teacher
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from datamodules.distill import DistillDataModule
    from domain_distil.modeling.student import StudentSpec, build_student
    from lightning_modules.distillation import DistillationModule

    work = Path(args.out) / "resume"
    teacher_dir = build_tiny_teacher(work / "teacher", hidden_size=128, num_attention_heads=4, intermediate_size=256)
    corpus = _tiny_corpus(teacher_dir, work)

    def build():
        torch.manual_seed(0)
        teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir)
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        module = DistillationModule(
            student=build_student(teacher, StudentSpec(num_layers=2)), teacher=teacher,
            token_counts=torch.ones(teacher.config.vocab_size), special_token_ids=tokenizer.all_special_ids,
            mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
            optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.98), eps=1e-6), seed=0,
        )
        data = DistillDataModule(corpus, pad_token_id=tokenizer.pad_token_id, batch_size=4, seed=0, max_length=64)
        return module, data

    def trainer(root: Path, callbacks: list) -> L.Trainer:
        # Deterministic kernels: CUDA's atomic-add ones (e.g. scatter-add backward) would make two
        # identical runs differ in the last bits, and the check is for exact resume. "warn": an op
        # without a deterministic kernel warns (and may show up in the difference) instead of failing.
        return L.Trainer(accelerator=args.accelerator, devices=1, precision="bf16-mixed", max_steps=args.resume_steps,
                         deterministic="warn", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=callbacks, use_distributed_sampler=False, default_root_dir=root,
                         enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks))

    L.seed_everything(0)
    module, data = build()
    trainer(work / "a", []).fit(module, datamodule=data)
    uninterrupted = {k: v.detach().cpu().clone() for k, v in module.student.state_dict().items()}

    stop = args.resume_steps // 2
    L.seed_everything(0)
    module, data = build()
    ckpt = ModelCheckpoint(dirpath=work / "ckpt", every_n_train_steps=stop, save_top_k=-1, save_last=True)
    trainer(work / "b", [ckpt, _StopAt(stop)]).fit(module, datamodule=data)
    interrupted_at = data.state_dict()

    L.seed_everything(999)  # another global state: the checkpoint must restore everything that matters
    module, data = build()
    ckpt = ModelCheckpoint(dirpath=work / "ckpt", every_n_train_steps=stop, save_top_k=-1, save_last=True)
    resumed_trainer = trainer(work / "b", [ckpt])
    resumed_trainer.fit(module, datamodule=data, ckpt_path="last")
    resumed = {k: v.detach().cpu() for k, v in module.student.state_dict().items()}
    max_diff = max((resumed[k].float() - uninterrupted[k].float()).abs().max().item() for k in uninterrupted)
    result = {"steps": args.resume_steps, "interrupted_at": interrupted_at,
              "resumed_to_step": int(resumed_trainer.global_step), "max_abs_weight_diff": max_diff,
              "ok": max_diff <= 1e-6 and resumed_trainer.global_step == args.resume_steps}
    print(f"resume: stopped at {interrupted_at} (mid-epoch), resumed to step {resumed_trainer.global_step}; "
          f"max |weight difference| vs uninterrupted = {max_diff:.3g} -> {'OK' if result['ok'] else 'FAILED'}")
    return result


def check_classify(args: argparse.Namespace) -> dict:
    """One real ``python run.py task=classify trainer=gpu`` job on a tiny encoder and task file."""
    from tiny_models import build_tiny_teacher

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_tasks import classify_overrides, intent_rows, write_jsonl

    work = Path(args.out) / "classify"
    encoder = build_tiny_teacher(work / "encoder")
    write_jsonl(work / "tasks" / "cc.jsonl", intent_rows(langs=("eng",)))
    command = [sys.executable, "run.py", *classify_overrides(encoder, work / "tasks", "logger=none"),
               f"trainer={args.accelerator}", f"paths.cache_dir={work / 'cache'}", f"hydra.run.dir={work / 'run'}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    log = done.stdout + done.stderr
    results = sorted((work / "run").rglob("results.json"))
    record = json.loads(results[0].read_text()) if results else {}
    on_gpu = "GPU available: True (cuda), used: True" in log
    on_wanted_device = on_gpu or args.accelerator == "cpu"
    result = {"returncode": done.returncode, "on_gpu": on_gpu, "status": record.get("status"),
              "test_f1": (record.get("test") or {}).get("f1"), "seconds": round(seconds, 1),
              "ok": done.returncode == 0 and on_wanted_device and record.get("status") == "ok"}
    if not result["ok"]:
        print(log[-3000:], file=sys.stderr)
    print(f"classify: exit {done.returncode}, on GPU: {on_gpu}, status {record.get('status')}, "
          f"{seconds:.0f} s -> {'OK' if result['ok'] else 'FAILED'}")
    return result


# ------------------------------------------------------------------------------------ entry point
CHECKS = {"throughput": check_throughput, "resume": check_resume, "classify": check_classify}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checks", nargs="*", metavar="{throughput,resume,classify}",
                        help="which checks to run (default: all three)")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: build the models on the meta device and print the FLOPs count")
    parser.add_argument("--out", default=None, help="folder for the run's files and gpu_check.json (default: a temp dir)")
    parser.add_argument("--steps", type=int, default=60, help="throughput: optimizer steps")
    parser.add_argument("--window", type=int, default=10, help="throughput: steps per tokens/s window")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput: sequences per step")
    parser.add_argument("--seq-len", type=int, default=128, help="throughput: tokens per sequence")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak, when its name is not in PEAK_BF16")
    parser.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu",
                        help="cpu only smoke-tests this script's logic on small sizes; its figures mean nothing")
    parser.add_argument("--resume-steps", type=int, default=8, help="resume: steps of the reference run")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.checks) - set(CHECKS))
    if unknown:
        parser.error(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
    args.checks = args.checks or list(CHECKS)
    if args.steps <= args.window:
        parser.error(f"--steps ({args.steps}) must exceed --window ({args.window}) to leave steady-state windows")
    if args.resume_steps < 2:
        parser.error(f"--resume-steps must be >= 2 to stop half-way, got {args.resume_steps}")
    return args


def dry_run(args: argparse.Namespace) -> dict:
    with torch.device("meta"):  # shapes and counts only: no memory, no time
        teacher = mbert_shaped_teacher("meta")
        student = reference_student(teacher)
    flops = distill_flops_per_token(teacher, student, args.seq_len)
    result = {"teacher_params": sum(p.numel() for p in teacher.parameters()),
              "student_params": sum(p.numel() for p in student.parameters()),
              "flops_per_token": flops, "checks": args.checks}
    print(f"dry run: teacher {result['teacher_params'] / 1e6:.1f} M params, student "
          f"{result['student_params'] / 1e6:.1f} M, {flops / 1e9:.3f} GFLOPs per distilled token at "
          f"seq_len {args.seq_len}; would run {', '.join(args.checks)}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        dry_run(args)
        return 0
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); "
              "run it on a GPU machine, or use --dry-run", file=sys.stderr)
        return 2
    args.out = args.out or tempfile.mkdtemp(prefix="gpu_check-")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (resume check)
    report = {"torch": torch.__version__, "accelerator": args.accelerator,
              "device": torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu"}
    for name in args.checks:
        report[name] = CHECKS[name](args)
    out = Path(args.out) / "gpu_check.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"report: {out}")
    failed = [name for name in ("resume", "classify") if name in report and not report[name]["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
