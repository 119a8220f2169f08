"""Lightning overhead of the distillation step: tokens/s of ``Trainer.fit`` vs a plain PyTorch loop.

Both run the same ``DistillationModule.compute_loss`` (masking, teacher and student forward, the
losses), backward, clipping at 5.0, AdamW and the LR schedule, on the same model and batches.
Runs alternate (plain, Lightning, plain, Lightning, ...) and the median of each is reported.

    python benchmarks/distill_throughput.py                 # CPU-sized model
    python benchmarks/distill_throughput.py --mbert-size --device cuda --precision bf16-mixed

The last line is the ratio Lightning / plain (1.0 = no overhead; the target is >= 0.90).
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForMaskedLM

from domain_distil.modeling.student import StudentSpec, build_student
from lightning_modules.distillation import DistillationModule


def make_models(args: argparse.Namespace):
    if args.mbert_size:
        config = BertConfig(vocab_size=119547)  # bert-base-multilingual-cased dimensions
    else:
        config = BertConfig(
            vocab_size=8000,
            hidden_size=256,
            num_hidden_layers=6,
            num_attention_heads=4,
            intermediate_size=1024,
            max_position_embeddings=512,
        )
    torch.manual_seed(0)
    teacher = BertForMaskedLM(config)
    student = build_student(teacher, StudentSpec(num_layers=config.num_hidden_layers // 2))
    return teacher, student, config


def make_batches(config: BertConfig, n: int, batch_size: int, seq_len: int) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        ids = torch.randint(5, config.vocab_size, (batch_size, seq_len), generator=generator)
        ids[:, 0], ids[:, -1] = 2, 3
        lengths = torch.full((batch_size,), seq_len)
        batches.append({"input_ids": ids, "lengths": lengths, "n_tokens": batch_size * seq_len})
    return batches


def make_module(teacher, student, config) -> DistillationModule:
    return DistillationModule(
        student=student,
        teacher=teacher,
        token_counts=torch.ones(config.vocab_size),
        special_token_ids=[0, 1, 2, 3, 4],
        mask_token_id=4,
        pad_token_id=0,
        optimizer=lambda params: torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6),
    )


def plain_loop(
    module: DistillationModule, batches: list[dict], warmup: int, device: str, precision: str
) -> float:
    module.to(device)
    module.teacher.to(device).eval()
    module.student.train()
    optimizer = torch.optim.AdamW(
        [p for p in module.student.parameters() if p.requires_grad], lr=5e-4, betas=(0.9, 0.98), eps=1e-6
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    autocast = torch.autocast(
        device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16-mixed"
    )
    tokens, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            _sync(device)
            start, tokens = time.perf_counter(), 0
        ids, lengths = batch["input_ids"].to(device), batch["lengths"].to(device)
        with autocast:
            loss, _ = module.compute_loss(ids, lengths)
        if not torch.isfinite(loss):  # the same NaN guard the module's training_step has
            raise RuntimeError("NaN")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.student.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["n_tokens"]
    _sync(device)
    return tokens / (time.perf_counter() - start)


class _Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.tokens, self.start = warmup, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            _sync(str(pl_module.device))
            self.start, self.tokens = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is not None:
            self.tokens += batch["n_tokens"]

    def on_train_end(self, trainer, pl_module) -> None:
        _sync(str(pl_module.device))
        self.rate = self.tokens / (time.perf_counter() - self.start)


def lightning_loop(
    module: DistillationModule, batches: list[dict], warmup: int, device: str, precision: str
) -> float:
    timer = _Timer(warmup)
    trainer = L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        precision=precision,
        max_steps=len(batches),
        gradient_clip_val=5.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        use_distributed_sampler=False,
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.rate


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--mbert-size", action="store_true", help="mBERT dimensions (119,547 vocab, 768 x 12)"
    )
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    teacher, student, config = make_models(args)
    batches = make_batches(config, args.steps, args.batch_size, args.seq_len)
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    plain_rates, lightning_rates = [], []
    for repeat in range(args.repeats):
        for name, loop, rates in (
            ("plain", plain_loop, plain_rates),
            ("lightning", lightning_loop, lightning_rates),
        ):
            student.load_state_dict(initial)
            module = make_module(teacher, student, config)
            rate = loop(module, batches, args.warmup, args.device, args.precision)
            rates.append(rate)
            print(f"repeat {repeat} {name:9s}: {rate:,.0f} tokens/s")
    plain, lightning = statistics.median(plain_rates), statistics.median(lightning_rates)
    print(f"plain PyTorch loop : {plain:,.0f} tokens/s (median of {args.repeats})")
    print(f"Lightning Trainer  : {lightning:,.0f} tokens/s (median of {args.repeats})")
    print(f"overhead: {100 * (1 - lightning / plain):.1f}%")
    print(f"ratio lightning/plain: {lightning / plain:.3f}")


if __name__ == "__main__":
    main()
