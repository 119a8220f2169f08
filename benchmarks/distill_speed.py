"""Distillation tokens/s on the CPU: today's fp32 default against bf16 autocast, length grouping and compile.

    python benchmarks/distill_speed.py                      # both setups, one thread: about 7 minutes
    python benchmarks/distill_speed.py --setups demo --settings fp32,bf16,bf16+compile-bodies

Two setups, each with its recipe's real ``DistillationModule.compute_loss`` (masking, teacher and
student forward, the loss terms), backward, clipping at 5.0 and AdamW:

- ``demo``: the embedded demo's teacher (me5_small, 12 x 384, 250k vocabulary), student (6 layers,
  word embeddings frozen) and recipe (``distill=hidden``), batches of 16 from the demo's in-domain
  corpus (the module comes from ``stages/distil.py``, as ``python run.py`` builds it).
- ``mbert``: a random teacher of bert-base-multilingual-cased's shape (12 x 768, FFN 3072, 119,547
  ids; ``benchmarks/gpu_check.py``), the paper's 6-layer student and the 5/2/1 recipe
  (``conf/distill/default.yaml``, batch 5), on random ids with a realistic length distribution:
  Stack-Exchange-like posts (log-normal, median 150 tokens, sigma 1) cut into 128-token chunks
  (the paper's 512 would make each fp32 batch take several seconds here).

Settings, each timed on the same batches: ``fp32`` (today's default: 32-true, length-grouped in
4-token buckets, eager), ``fp32-ungrouped`` (random batches: what grouping already saves),
``bf16`` (``trainer.precision=bf16-mixed``: Lightning's own ``MixedPrecision`` autocast context,
the teacher under it too), ``bf16+compile`` (``distill.compile=true``: the loss terms compiled,
``DistillationModule.compile_loss``; its warm-up timed apart) and, only when asked for,
``bf16+compile-bodies`` (``Module.compile`` on both models' bodies, which measured no faster). The
new default is what ``conf/distill/default.yaml`` gives on this CPU: bf16 where it has bf16 units,
plus the compiled loss where ``distill.compile=auto`` turns it on (``stages/distil.py:
compiles_loss``: logit terms over a large vocabulary). The CPU is shared: every setting runs its
batches once untimed (each sequence length's first product is slow), then the settings alternate
round by round; a setting's speed-up is the median over rounds of its tokens/s over fp32's in
the same round (tokens/s themselves: the median round). The optimizer steps every
``accumulate_grad_batches`` batches as the recipe says (the mBERT recipe's 50 leaves none inside
the timed rounds; its cost is printed, amortised over 50 batches).

Also printed: the padding share of a whole epoch of each batch order (and of the timed batches);
the teacher's forward under ``torch.no_grad`` (what the module uses) against ``inference_mode``;
the loss of the new default against fp32 on the same batches (same masks, no dropout) with its
tolerance; achieved FLOP/s against a matrix-product peak measured in the same run (fp32 and bf16,
the FFN's shape at the batches' size), i.e. MFU, where a token's FLOPs are the teacher's forward
plus three times the student's (forward and backward), 2 per multiply-add over every
``nn.Linear`` that runs (the MLM heads only on the rows the recipe reads) plus attention's
4 x layers x length x hidden; and the CPU's bf16 instructions. The last line is the new default's
tokens/s over today's default's (the geometric mean of the setups).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_check beside this file
from gpu_check import MBERT_VOCAB, ROOT, linear_weights, mbert_shaped_teacher, reference_student  # noqa: E402

from datamodules.distill import pad_batch  # noqa: E402
from datamodules.samplers import LengthGroupedBatchSampler  # noqa: E402
from domain_distil.common.cpu import bf16_instructions, has_bf16_units  # noqa: E402
from domain_distil.modeling.masking import MaskingConfig  # noqa: E402
from domain_distil.modeling.mlm import mlm_body  # noqa: E402
from domain_distil.modeling.objectives import Objective  # noqa: E402
from domain_distil.stages.distil import compiles_loss  # noqa: E402
from lightning_modules.distillation import DistillationModule  # noqa: E402

# |loss(new default) - loss(fp32)| / loss(fp32) per batch: bf16 keeps 8 significant bits (a relative
# rounding of 2^-9 = 0.2% per value); autocast runs softmax, norms and the losses in fp32, so the
# loss of a batch moves by well under 1% (measured here: under 0.1%).
LOSS_TOLERANCE = 0.01
SETTINGS = ("fp32", "fp32-ungrouped", "bf16", "bf16+compile", "fp32+compile", "bf16+compile-bodies")
DEFAULT_SETTINGS = "fp32,fp32-ungrouped,bf16,bf16+compile"
TODAY = "fp32"
COMPILE_NOISE = 1.03  # a compiled rate within 3% of eager's is no gain on a shared machine


@dataclass
class Setup:
    """One model pair, recipe and batch source, and what the settings measured on it."""

    name: str
    module: DistillationModule
    grouped: list[dict]  # today's batch order: 4-token length buckets
    ungrouped: list[dict]
    epoch_padding: dict[str, float]  # a whole epoch's padding share, grouped and ungrouped
    accumulate: int
    hidden: int
    vocabulary: int
    rates: dict[str, list[float]] = field(default_factory=dict)
    variants: dict[str, DistillationModule] = field(default_factory=dict)  # compiled copies
    warmup_s: dict[str, float] = field(default_factory=dict)

    @property
    def new_default(self) -> str:
        """What conf/distill/default.yaml gives on this CPU (precision resolver, distill.compile=auto)."""
        precision = "bf16" if has_bf16_units() else "fp32"
        compiled = compiles_loss("auto", True, self.module.objective, self.vocabulary)
        return f"{precision}+compile" if compiled else precision

    def module_for(self, setting: str) -> DistillationModule:
        return self.variants.get(setting.split("+", 1)[1], self.module) if "+" in setting else self.module


# ------------------------------------------------------------------------------------ batches
def padding_share(batches: list[dict]) -> float:
    return 1.0 - sum(b["n_tokens"] for b in batches) / sum(b["n_positions"] for b in batches)


def batch_orders(lengths: np.ndarray, batch_size: int, max_length: int, sequences: Callable[[list[int]], list],
                 pad_id: int, count: int) -> tuple[list[dict], list[dict], dict[str, float]]:
    """The first ``count`` batches of an epoch, length-grouped as today and ungrouped (seed 56), and
    the padding share of the whole epoch in each order."""
    orders, padding = [], {}
    for grouped in (True, False):
        sampler = LengthGroupedBatchSampler(lengths, batch_size, 56, group_by_size=grouped, max_length=max_length)
        batches = sampler.batches()
        padding["grouped" if grouped else "ungrouped"] = 1.0 - float(lengths.sum()) / sum(
            int(lengths[b].max()) * len(b) for b in batches)
        orders.append([pad_batch(sequences(indices), pad_id) for indices in batches[:count]])
    return orders[0], orders[1], padding


def realistic_lengths(n_documents: int, max_length: int, seed: int = 0) -> np.ndarray:
    """Stack-Exchange-like documents (log-normal tokens, median 150, sigma 1), cut as the corpus
    builder cuts them: full ``max_length`` chunks, then the rest; chunks under 12 tokens dropped."""
    rng = np.random.default_rng(seed)
    chunks: list[int] = []
    for length in np.exp(rng.normal(math.log(150), 1.0, n_documents)).astype(int) + 2:
        while length > max_length:
            chunks.append(max_length)
            length -= max_length - 2
        chunks.append(int(length))
    return np.array([c for c in chunks if c >= 12])


# ------------------------------------------------------------------------------------ setups
def demo_setup(cache_dir: Path, count: int) -> Setup:
    """The demo's teacher, student, recipe and in-domain corpus, built by the demo's own code."""
    from hydra import compose, initialize_config_dir

    from domain_distil.common.configs import config_dir
    from domain_distil.corpus.dataset import TokenSequenceDataset
    from domain_distil.corpus.shards import build_corpus
    from domain_distil.modeling.teachers import load_teacher
    from domain_distil.stages.distil import _build_module
    from domain_distil.stages.protocol import student_plan
    from domain_distil.tasks.demo import demo_data

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=demo", f"paths.cache_dir={cache_dir}"])
    corpus_text = demo_data(cfg.demo.data, cache_dir) / "in_domain"
    plan = student_plan(cfg, corpus_text)
    teacher = load_teacher(plan.teacher_cfg, cache_dir, path=plan.teacher_path)
    corpus = build_corpus(plan.files, teacher.tokenizer, cache_dir, plan.shard_settings)
    module, _ = _build_module(plan, teacher, corpus)
    dataset = TokenSequenceDataset(corpus)
    grouped, ungrouped, padding = batch_orders(
        dataset.lengths, int(plan.distill["batch_size"]), plan.shard_settings.max_seq_length,
        lambda indices: [dataset[i] for i in indices], teacher.tokenizer.pad_token_id, count)
    return Setup("demo", module, grouped, ungrouped, padding, int(plan.distill["trainer"]["accumulate_grad_batches"]),
                 int(teacher.model.config.hidden_size), int(teacher.model.config.vocab_size))


def mbert_setup(count: int, max_length: int) -> Setup:
    """An mBERT-shaped random teacher, the paper's student and the 5/2/1 recipe of conf/distill/default.yaml."""
    from omegaconf import OmegaConf

    from domain_distil.common.configs import config_dir

    distill = OmegaConf.to_container(OmegaConf.load(config_dir() / "distill" / "default.yaml"))
    torch.manual_seed(0)
    teacher = mbert_shaped_teacher()
    student = reference_student(teacher)
    module = DistillationModule(
        student=student, teacher=teacher, token_counts=torch.ones(MBERT_VOCAB), special_token_ids=[0, 1, 2, 3, 4],
        mask_token_id=4, pad_token_id=0, optimizer=None, objective=Objective.from_config(distill),
        masking=MaskingConfig(**distill["masking"]), seed=int(distill["seed"]),
    )
    lengths = realistic_lengths(4000, max_length)
    generator = np.random.default_rng(1)
    ids = [generator.integers(5, MBERT_VOCAB, int(n)).astype(np.int32) for n in lengths]
    grouped, ungrouped, padding = batch_orders(lengths, int(distill["batch_size"]), max_length,
                                               lambda indices: [ids[i] for i in indices], 0, count)
    return Setup("mbert", module, grouped, ungrouped, padding, int(distill["trainer"]["accumulate_grad_batches"]),
                 768, MBERT_VOCAB)


# ------------------------------------------------------------------------------------ timing
def precision_context(setting: str) -> AbstractContextManager:
    """What ``trainer.precision`` wraps the training step in: Lightning's own plugin, so the same autocast."""
    if not setting.startswith("bf16"):
        return nullcontext()
    from lightning.pytorch.plugins.precision import MixedPrecision

    return MixedPrecision("bf16-mixed", "cpu").forward_context()


class Trainer:
    """A training loop like Lightning's for one module: step, backward, clip, AdamW every N batches."""

    def __init__(self, module: DistillationModule, accumulate: int) -> None:
        self.module, self.accumulate, self.seen = module, accumulate, 0
        module.student.train()
        self.params = [p for p in module.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6)

    def batch(self, batch: dict, setting: str) -> None:
        with precision_context(setting):
            loss, _ = self.module.compute_loss(batch["input_ids"], batch["lengths"])
        loss.backward()
        self.seen += 1
        if self.seen % self.accumulate == 0:
            self.step()

    def step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def tokens_per_sec(self, batches: list[dict], setting: str) -> float:
        started = time.perf_counter()
        for batch in batches:
            self.batch(batch, setting)
        return sum(b["n_tokens"] for b in batches) / (time.perf_counter() - started)


def compiled_variant(module: DistillationModule, what: str) -> DistillationModule:
    """``compile``: the module with its loss compiled (``distill.compile``), sharing student and teacher;
    ``compile-bodies``: a copy with both models' bodies compiled in place (``Module.compile``)."""
    if what == "compile":
        variant = copy.copy(module)  # the same student and teacher, its own loss function
        variant.compile_loss()
        return variant
    variant = copy.deepcopy(module)  # the teacher too: compiling a body is in place
    for model in (variant.student, variant.teacher):
        mlm_body(model).compile(dynamic=True)
    return variant


def measure(setup: Setup, settings: tuple[str, ...], n_rounds: int, per_round: int) -> dict[str, float]:
    """Times the settings round by round; returns the matrix-product peaks, the best of every round's."""
    tokens = round(statistics.mean(b["n_positions"] for b in setup.grouped))
    peaks = {"fp32": 0.0, "bf16": 0.0}
    trainers = {}
    for setting in settings:
        what = setting.split("+", 1)[1] if "+" in setting else None
        if what is not None and what not in setup.variants:
            setup.variants[what] = compiled_variant(setup.module, what)
        trainers[setting] = Trainer(setup.module_for(setting), setup.accumulate)
        if what is not None:  # the compiler's warm-up: a first shape, then a second that makes it dynamic
            started = time.perf_counter()
            for batch in setup.grouped[-2:]:
                trainers[setting].batch(batch, setting)
            setup.warmup_s[setting] = time.perf_counter() - started
    for setting in settings:  # untimed: every sequence length's first matrix products are slow
        timed = (setup.ungrouped if setting == "fp32-ungrouped" else setup.grouped)[: n_rounds * per_round]
        for batch in timed:
            trainers[setting].batch(batch, setting)
    for r in range(n_rounds):
        window = slice(r * per_round, (r + 1) * per_round)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peaks[name] = max(peaks[name], matmul_peak(tokens, setup.hidden, dtype))
        for setting in settings if r % 2 == 0 else tuple(reversed(settings)):  # alternate who goes first
            batches = (setup.ungrouped if setting == "fp32-ungrouped" else setup.grouped)[window]
            rate = trainers[setting].tokens_per_sec(batches, setting)
            setup.rates.setdefault(setting, []).append(rate)
            print(f"  {setup.name} round {r} {setting:19s} {rate:8,.0f} tokens/s", flush=True)
    print(f"{setup.name}: matrix-product peak at ({tokens} x {setup.hidden}) @ ({setup.hidden} x {4 * setup.hidden}), "
          f"best of {n_rounds} rounds: fp32 {peaks['fp32'] / 1e9:,.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:,.0f} GFLOP/s")
    return peaks


def teacher_forward_modes(setup: Setup, batch: dict, repeats: int = 5) -> dict[str, float]:
    """Median seconds of the teacher's forward under ``torch.no_grad`` (what the module uses) and under
    ``torch.inference_mode``, alternating, in the new default's precision."""
    body, ids = mlm_body(setup.module.teacher), batch["input_ids"]
    mask = (torch.arange(ids.shape[1]) < batch["lengths"][:, None]).long()
    seconds: dict[str, list[float]] = {}
    modes = [("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)]
    for repeat in range(repeats):
        for name, mode in modes if repeat % 2 == 0 else modes[::-1]:  # neither always runs first
            with mode(), precision_context(setup.new_default):
                started = time.perf_counter()
                body(input_ids=ids, attention_mask=mask)
                seconds.setdefault(name, []).append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def optimizer_step_seconds(setup: Setup) -> float:
    trainer = Trainer(setup.module, setup.accumulate)
    trainer.batch(setup.grouped[0], setup.new_default)  # any precision: the step itself updates fp32 weights
    started = time.perf_counter()
    trainer.step()
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------ checks
def loss_agreement(setup: Setup, batches: list[dict]) -> list[tuple[float, float]]:
    """(fp32 loss, new default's loss) per batch: student in eval mode (no dropout), the same masks."""
    setup.module.student.eval()
    pairs = []
    try:
        for batch in batches:
            losses = []
            for setting in (TODAY, setup.new_default):
                module = setup.module_for(setting)
                module._mask_generator = None  # reseeded on the next call: the same masks for both
                with precision_context(setting):
                    loss, _ = module.compute_loss(batch["input_ids"], batch["lengths"])
                losses.append(float(loss.detach()))
            pairs.append((losses[0], losses[1]))
    finally:
        setup.module.student.train()
    return pairs


def check_losses(setup: Setup, batches: list[dict]) -> bool:
    pairs = loss_agreement(setup, batches)
    worst = max(abs(b - f) / abs(f) for f, b in pairs)
    ok = worst <= LOSS_TOLERANCE
    print(f"  {setup.name}: loss fp32 vs {setup.new_default} on {len(pairs)} batches: "
          + ", ".join(f"{f:.4f}/{b:.4f}" for f, b in pairs)
          + f"; worst relative difference {100 * worst:.3f}% (tolerance {100 * LOSS_TOLERANCE:.0f}%): "
          + ("pass" if ok else "FAIL"))
    return ok


def matmul_peak(tokens: int, hidden: int, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """Best FLOP/s of (tokens x hidden) @ (hidden x 4 hidden), the FFN's product at the batches' size."""
    a, b = torch.randn(tokens, hidden, dtype=dtype), torch.randn(hidden, 4 * hidden, dtype=dtype)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * tokens * hidden * 4 * hidden / (time.perf_counter() - started))
    return best


def body_flops_per_token(model: nn.Module, seq_len: float) -> float:
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    hidden = getattr(config, "hidden_size", None) or config.dim
    return 2 * linear_weights(mlm_body(model)) + 4 * layers * seq_len * hidden


def head_flops_per_row(model: nn.Module) -> float:
    """The MLM head's products (transform and vocabulary projection): every Linear outside the body."""
    return 2 * (linear_weights(model) - linear_weights(mlm_body(model)))


def flops_per_token(setup: Setup, batches: list[dict]) -> float:
    """FLOPs per real token: teacher forward + 3 x student forward, padding counted as work done."""
    module, objective = setup.module, setup.module.objective
    positions = sum(b["n_positions"] for b in batches)
    tokens = sum(b["n_tokens"] for b in batches)
    seq_len = statistics.mean(int(b["input_ids"].shape[1]) for b in batches)
    per_position = body_flops_per_token(module.teacher, seq_len) + 3 * body_flops_per_token(module.student, seq_len)
    flops = per_position * positions
    if objective.needs_student_logits:  # the heads run on the rows the logit terms read
        rows = tokens if objective.needs_teacher_logits and not objective.restrict_ce_to_mask else 0.15 * tokens
        teacher_rows = rows if objective.needs_teacher_logits else 0
        flops += teacher_rows * head_flops_per_row(module.teacher) + 3 * rows * head_flops_per_row(module.student)
    return flops / tokens


# ------------------------------------------------------------------------------------ report
def speedup(setup: Setup, setting: str, baseline: str = TODAY) -> float:
    """The median over rounds of ``setting``'s tokens/s over ``baseline``'s in the same round: a load
    that comes and goes between rounds (the machine is shared) cancels out of each round's ratio."""
    return statistics.median(a / b for a, b in zip(setup.rates[setting], setup.rates[baseline], strict=True))


def report(setup: Setup, peaks: dict[str, float], n_rounds: int, per_round: int) -> float:
    timed = {True: setup.grouped[: n_rounds * per_round], False: setup.ungrouped[: n_rounds * per_round]}
    print(f"\n{setup.name}: padding share of a whole epoch: {100 * setup.epoch_padding['grouped']:.1f}% today "
          f"(4-token buckets), {100 * setup.epoch_padding['ungrouped']:.1f}% ungrouped; of the timed batches "
          f"{100 * padding_share(timed[True]):.1f}% and {100 * padding_share(timed[False]):.1f}%; "
          f"{flops_per_token(setup, timed[True]) / 1e9:.3f} GFLOPs per token")
    for setting, rates in setup.rates.items():
        rate = statistics.median(rates)
        flops = flops_per_token(setup, timed[setting != "fp32-ungrouped"])  # padding is work done
        dtype = "bf16" if setting.startswith("bf16") else "fp32"
        warmup = f"  (warm-up {setup.warmup_s[setting]:.0f} s)" if setting in setup.warmup_s else ""
        print(f"  {setting:19s} {rate:8,.0f} tokens/s (median of {len(rates)})  x{speedup(setup, setting):.2f} vs today  "
              f"{rate * flops / 1e9:6.1f} GFLOP/s  MFU {100 * rate * flops / peaks[dtype]:4.1f}% of the {dtype} peak"
              + warmup)
    for setting, warmup in setup.warmup_s.items():
        eager_setting = setting.split("+", 1)[0]
        if eager_setting not in setup.rates:
            continue
        gain = speedup(setup, setting, eager_setting)
        eager = statistics.median(setup.rates[eager_setting])
        pays_off = (f"its {warmup:.0f} s warm-up pays for itself after {warmup * eager / (1 - 1 / gain):,.0f} tokens"
                    if gain > COMPILE_NOISE else f"no gain beyond the noise ({COMPILE_NOISE - 1:.0%})")
        print(f"  {setting} vs {eager_setting}: x{gain:.2f}; {pays_off}")
    ratio = speedup(setup, setup.new_default)
    print(f"  {setup.name}: new default ({setup.new_default}) / today's default ({TODAY}) tokens/s: {ratio:.2f}")
    return ratio


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", default="demo,mbert", help="comma-separated: demo, mbert")
    parser.add_argument("--settings", default=None,
                        help=f"comma-separated, from {SETTINGS} (default: {DEFAULT_SETTINGS}, with "
                             "fp32+compile instead of the bf16 ones on a CPU without bf16 units)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per setting (median reported)")
    parser.add_argument("--demo-batches", type=int, default=3, help="demo batches per setting and round")
    parser.add_argument("--mbert-batches", type=int, default=1, help="mbert batches per setting and round")
    parser.add_argument("--mbert-max-length", type=int, default=128, help="mbert chunk length")
    parser.add_argument("--cache-dir", default=str(ROOT / "cache"), help="the demo teacher and data (cached)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine a second thread's waits for the other "
                             "make whole rounds 10-20x slower at random; the demo also distils on one thread)")
    args = parser.parse_args(argv)
    default = DEFAULT_SETTINGS if has_bf16_units() else "fp32,fp32-ungrouped,fp32+compile"
    args.setups = [s for s in args.setups.split(",") if s]
    args.settings = tuple(s for s in (args.settings or default).split(",") if s)
    unknown = sorted(set(args.settings) - set(SETTINGS)) + sorted(set(args.setups) - {"demo", "mbert"})
    if unknown:
        parser.error(f"unknown setup or setting(s) {unknown}")
    if TODAY not in args.settings:
        parser.error(f"--settings must include {TODAY} (the ratios compare with it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"CPU: {torch.get_num_threads()} torch threads; bf16 instructions: {bf16_instructions()}; "
          f"torch {torch.__version__}. The machine may be shared: settings alternate, medians reported.")
    ratios, losses_ok = [], True
    for name in args.setups:
        per_round = args.demo_batches if name == "demo" else args.mbert_batches
        count = (args.rounds + 1) * per_round
        setup = demo_setup(Path(args.cache_dir), count) if name == "demo" else mbert_setup(count, args.mbert_max_length)
        settings = tuple(dict.fromkeys((*args.settings, setup.new_default)))  # the new default is always timed
        print(f"{name}: new default here = {setup.new_default}", flush=True)
        peaks = measure(setup, settings, args.rounds, per_round)
        losses_ok &= check_losses(setup, setup.grouped[-per_round:])
        modes = teacher_forward_modes(setup, setup.grouped[0])
        print(f"  {name}: teacher forward {1000 * modes['no_grad']:.0f} ms under no_grad (used), "
              f"{1000 * modes['inference_mode']:.0f} ms under inference_mode (median of 5, alternating)")
        if setup.accumulate > per_round * args.rounds:
            print(f"  {name}: one optimizer step (clip + AdamW) takes {optimizer_step_seconds(setup):.2f} s, every "
                  f"{setup.accumulate} batches: outside the timed rounds")
        ratios.append(report(setup, peaks, args.rounds, per_round))
    ratio = math.prod(ratios) ** (1 / len(ratios))
    target = 2.0 if has_bf16_units() else 1.3
    print(f"\nsetups {', '.join(args.setups)}; target >= {target} on this CPU ({bf16_instructions()}); "
          f"loss within tolerance: {'yes' if losses_ok else 'NO'}; {time.perf_counter() - started:.0f} s in all")
    print(f"new default / today's default tokens/s: {ratio:.2f}")
    return 0 if losses_ok else 1


if __name__ == "__main__":
    sys.exit(main())
