"""DistillationModule under a real Trainer: teacher frozen, loss goes down, export, exact resume."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from datamodules.distill import DistillDataModule
from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.shards import ShardSettings, build_corpus
from domain_distil.modeling.export import export_model
from domain_distil.modeling.student import StudentSpec, build_student
from lightning_modules.distillation import (
    DistillationModule,
    NonFiniteLossError,
    linear_warmup_decay,
    reference_total_steps,
)


@pytest.fixture(scope="module")
def corpus_dir(tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    words = "my order refund delivery account password card payment help cancel change track package".split()
    (root / "text").mkdir()
    lines = [" ".join(rng.choice(words, size=rng.integers(12, 40))) for _ in range(160)]
    (root / "text" / "eng.txt").write_text("\n".join(lines) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    return build_corpus(
        discover_files(root / "text"), tokenizer, root / "cache", ShardSettings(max_seq_length=64)
    )


def make_module(
    teacher_dir: Path, corpus_dir: Path, seed: int = 0, **kwargs
) -> tuple[DistillationModule, DistillDataModule]:
    torch.manual_seed(seed)
    teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    student = build_student(teacher, StudentSpec(num_layers=2))
    module = DistillationModule(
        student=student,
        teacher=teacher,
        token_counts=torch.from_numpy(np.load(corpus_dir / "token_counts.npy")),
        special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        optimizer=lambda params: torch.optim.AdamW(
            params, lr=kwargs.get("lr", 1e-3), betas=(0.9, 0.98), eps=1e-6
        ),
        seed=seed,
    )
    datamodule = DistillDataModule(
        corpus_dir, pad_token_id=tokenizer.pad_token_id, batch_size=4, seed=seed, max_length=64
    )
    return module, datamodule


def make_trainer(tmp_path: Path, max_steps: int, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        accumulate_grad_batches=2,
        gradient_clip_val=5.0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        deterministic=True,
        **kwargs,
    )


def test_teacher_stays_frozen_and_out_of_everything(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    seen_modes = []

    class WatchTeacher(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen_modes.append(pl_module.teacher.training)

    trainer = make_trainer(tmp_path, max_steps=4, callbacks=[WatchTeacher()], enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    assert module.teacher.training is False and seen_modes and not any(seen_modes)
    assert all(not p.requires_grad for p in module.teacher.parameters())
    for name, tensor in module.teacher.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    optimizer_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimizer_params & {id(p) for p in module.teacher.parameters()}
    assert not any(k.startswith(("teacher", "_teacher")) for k in module.state_dict())
    # Position embeddings are frozen, so they are not in the optimizer either.
    assert id(module.student.distilbert.embeddings.position_embeddings.weight) not in optimizer_params


def _fixed_batch_loss(module: DistillationModule, corpus_dir: Path) -> float:
    datamodule = DistillDataModule(corpus_dir, pad_token_id=0, batch_size=16, seed=123, max_length=64)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module.eval()
    module._mask_generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        loss, _ = module.compute_loss(batch["input_ids"], batch["lengths"])
    return loss.item()


def test_a_few_steps_lower_the_loss(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir, lr=3e-3)
    before = _fixed_batch_loss(module, corpus_dir)
    make_trainer(tmp_path, max_steps=20, enable_checkpointing=False).fit(module, datamodule=datamodule)
    after = _fixed_batch_loss(module, corpus_dir)
    assert after < 0.9 * before, (before, after)


def test_nan_loss_stops_with_a_clear_message(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    with torch.no_grad():
        module.student.vocab_transform.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="NaN/inf distillation loss at global step 0"):
        make_trainer(tmp_path, max_steps=2, enable_checkpointing=False).fit(module, datamodule=datamodule)


def test_schedule_is_the_reference_one():
    assert reference_total_steps(batches_per_epoch=1000, accumulate=50, max_epochs=3) == 61
    multiplier = linear_warmup_decay(warmup_steps=4, total_steps=61)
    assert [multiplier(s) for s in (0, 2, 4)] == [0.0, 0.5, 1.0]
    assert multiplier(61) == 0.0 and multiplier(32) == pytest.approx(29 / 57)


def test_export_reloads_with_identical_outputs(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    make_trainer(tmp_path, max_steps=2, enable_checkpointing=False).fit(module, datamodule=datamodule)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    out = export_model(module.student, tokenizer, tmp_path / "student", {"kind": "student"})
    encoded = tokenizer(["my order never arrived", "refund please"], padding=True, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    student = module.student.eval()
    with torch.no_grad():
        expected_logits = student(**inputs).logits
        expected_hidden = student.distilbert(**inputs).last_hidden_state
        mlm = AutoModelForMaskedLM.from_pretrained(out).eval()
        body = AutoModel.from_pretrained(out).eval()
        torch.testing.assert_close(mlm(**inputs).logits, expected_logits, rtol=0, atol=0)
        torch.testing.assert_close(body(**inputs).last_hidden_state, expected_hidden, rtol=0, atol=0)
    assert (
        AutoTokenizer.from_pretrained(out)("refund please")["input_ids"]
        == tokenizer("refund please")["input_ids"]
    )


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_resume_mid_epoch_matches_uninterrupted_run(tiny_teacher_dir, corpus_dir, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(0)
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    make_trainer(tmp_path / "a", max_steps=8, enable_checkpointing=False).fit(module, datamodule=datamodule)
    uninterrupted = {k: v.clone() for k, v in module.student.state_dict().items()}

    L.seed_everything(0)
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1, save_last=True
    )
    make_trainer(tmp_path / "b", max_steps=8, callbacks=[checkpoint, _StopAt(3)]).fit(
        module, datamodule=datamodule
    )
    # mid-epoch: 160 seqs / 4 = 40 batches
    assert datamodule.state_dict() == {"epoch": 0, "batches_seen": 6, "world_size": 1, "batch_size": 4}

    L.seed_everything(999)  # a different global state: the checkpoint must restore what matters
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir, seed=0)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1, save_last=True
    )
    trainer = make_trainer(tmp_path / "b", max_steps=8, callbacks=[checkpoint])
    trainer.fit(module, datamodule=datamodule, ckpt_path="last")
    assert trainer.global_step == 8
    for name, tensor in module.student.state_dict().items():
        torch.testing.assert_close(tensor, uninterrupted[name], rtol=1e-5, atol=1e-6, msg=name)


def test_plain_progress_lines_reach_a_log_file(tiny_teacher_dir, corpus_dir, tmp_path, caplog):
    """Off a terminal (a log file under nohup/SLURM), the fit logs plain lines: tokens, tokens/s, ETA,
    and the manifest figure is the whole run's average."""
    import logging

    from callbacks.throughput import TokenThroughput

    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    throughput = TokenThroughput(window_steps=2, plain_interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="domain_distil.progress"):
        make_trainer(tmp_path, max_steps=4, callbacks=[throughput], enable_checkpointing=False).fit(
            module, datamodule=datamodule)
    lines = [r.getMessage() for r in caplog.records if r.name == "domain_distil.progress"]
    assert any(line.startswith("distil | ") and "tokens/s" in line and "ETA" in line for line in lines), lines
    assert "done in" in lines[-1]
    assert throughput.run_tokens > 0 and throughput.run_average == pytest.approx(
        throughput.run_tokens / throughput.run_seconds)
