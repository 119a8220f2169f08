"""Exact resume of a distillation: any epoch, mid-epoch, signals, NaN stops, every rank, device types.

In-process tests drive a real Trainer with ``ResumableCheckpoint``; the slow ones run the CLI in a
subprocess, SIGKILL it at a chosen optimizer step, resume with ``ckpt_path=last`` and compare the
exported weights with an uninterrupted run (max abs difference <= 1e-6).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer

from callbacks.resumable_checkpoint import (
    CheckpointWriteError,
    FolderLocalCheckpointIO,
    ResumableCheckpoint,
    TrainingInterrupted,
    read_last_record,
)
from datamodules.distill import DistillDataModule
from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.shards import ShardSettings, build_corpus
from domain_distil.modeling.objectives import Objective
from domain_distil.modeling.student import StudentSpec, build_student
from domain_distil.stages.checkpoints import (
    CorruptCheckpoint,
    ResumeCheckpointNotFound,
    resolve_resume_checkpoint,
    write_run_record,
)
from lightning_modules.distillation import RNG_CHECKPOINT_KEY, DistillationModule, NonFiniteLossError
from tests.fault_injection import DiskFullAtSave, SignalAtStep

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-6
# 40 sequences, batch 4 -> 10 batches an epoch; accumulation 3 -> optimizer steps after batches
# 3, 6, 9 and the epoch's last one: 4 steps an epoch, 16 in 4 epochs.
SEQUENCES, BATCH, ACCUMULATE, EPOCHS, STEPS_PER_EPOCH = 40, 4, 3, 4, 4


@pytest.fixture(scope="module")
def corpus_dir(tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_corpus")
    rng = np.random.default_rng(1)
    words = "my order refund delivery account password card payment help cancel change track package".split()
    (root / "text").mkdir()
    lines = [" ".join(rng.choice(words, size=rng.integers(12, 30))) for _ in range(SEQUENCES)]
    (root / "text" / "eng.txt").write_text("\n".join(lines) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    return build_corpus(discover_files(root / "text"), tokenizer, root / "cache", ShardSettings(max_seq_length=64))


def _build(
    teacher_dir: Path, corpus_dir: Path, objective: Objective | None = None
) -> tuple[DistillationModule, DistillDataModule]:
    L.seed_everything(0)
    teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    module = DistillationModule(
        student=build_student(teacher, StudentSpec(num_layers=2)),
        teacher=teacher,
        token_counts=torch.from_numpy(np.load(corpus_dir / "token_counts.npy")),
        special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        optimizer=lambda params: torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.98), eps=1e-6),
        seed=0,
        objective=objective,
    )
    datamodule = DistillDataModule(corpus_dir, pad_token_id=tokenizer.pad_token_id, batch_size=BATCH, seed=0)
    return module, datamodule


def _fit(
    teacher_dir: Path, corpus_dir: Path, root: Path, callbacks=(), ckpt_path=None, every=100, objective=None,
    **trainer_kwargs,
) -> tuple[DistillationModule, L.Trainer, ResumableCheckpoint]:
    module, datamodule = _build(teacher_dir, corpus_dir, objective)
    checkpoint = ResumableCheckpoint(root / "checkpoints", every_n_train_steps=every)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=trainer_kwargs.pop("max_epochs", EPOCHS),
        accumulate_grad_batches=ACCUMULATE, gradient_clip_val=5.0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=root, deterministic=True,
        callbacks=[*callbacks, checkpoint], **trainer_kwargs,
    )
    if ckpt_path is not None:
        L.seed_everything(999)  # a different global state: the checkpoint must restore all that matters
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module, trainer, checkpoint


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _weights(module: DistillationModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.student.state_dict().items()}


class _CrashAt(L.Callback):
    """Dies like SIGKILL would (nothing saved on the way out) after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def uninterrupted(tiny_teacher_dir, corpus_dir, tmp_path_factory):
    module, trainer, _ = _fit(tiny_teacher_dir, corpus_dir, tmp_path_factory.mktemp("uninterrupted"))
    assert trainer.global_step == EPOCHS * STEPS_PER_EPOCH
    return _weights(module)


@pytest.mark.parametrize(
    ("every", "crash_at", "resumes_at"),
    [
        (3, 11, 9),  # last.ckpt mid-epoch 3 of 4 (steps 9-12 are epoch index 2)
        (4, 10, 8),  # last.ckpt on the last batch of epoch 2: the resume starts epoch 3 afresh
    ],
)
def test_resume_in_a_later_epoch_matches_the_uninterrupted_run(
    tiny_teacher_dir, corpus_dir, uninterrupted, tmp_path, every, crash_at, resumes_at
):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tiny_teacher_dir, corpus_dir, tmp_path, callbacks=[_CrashAt(crash_at)], every=every)
    assert read_last_record(tmp_path / "checkpoints")["step"] == resumes_at
    module, trainer, _ = _fit(tiny_teacher_dir, corpus_dir, tmp_path, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert trainer.global_step == EPOCHS * STEPS_PER_EPOCH
    assert _max_abs_diff(_weights(module), uninterrupted) <= TOLERANCE


def test_resume_with_the_layerwise_and_attention_terms_on_matches_the_uninterrupted_run(
    tiny_teacher_dir, corpus_dir, tmp_path
):
    """The paper's terms plus every layer's hidden states and attention probabilities (Q/K hooks in
    both models): a crash in epoch 2 of 2 and ``last.ckpt`` give the uninterrupted run's weights."""
    objective = Objective.from_config({"terms": {
        "ce": {"weight": 5.0, "temperature": 2.0}, "mlm": {"weight": 2.0}, "layers": {"weight": 1.0, "metric": "cosine"},
        "attn": {"weight": 1.0, "metric": "kl"}}})
    module, trainer, _ = _fit(tiny_teacher_dir, corpus_dir, tmp_path / "a", objective=objective, max_epochs=2)
    assert trainer.global_step == 2 * STEPS_PER_EPOCH and set(trainer.callback_metrics) >= {
        "train/loss_layers", "train/loss_attn", "train/loss_ce", "train/loss_mlm"}
    uninterrupted = _weights(module)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tiny_teacher_dir, corpus_dir, tmp_path / "b", callbacks=[_CrashAt(7)], every=3, objective=objective,
             max_epochs=2)
    assert read_last_record(tmp_path / "b" / "checkpoints")["step"] == 6
    module, trainer, _ = _fit(tiny_teacher_dir, corpus_dir, tmp_path / "b", objective=objective, max_epochs=2,
                              ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"))
    assert trainer.global_step == 2 * STEPS_PER_EPOCH
    assert _max_abs_diff(_weights(module), uninterrupted) <= TOLERANCE


@pytest.mark.parametrize(
    ("name", "batch_in_step", "stops_at"),
    [
        ("SIGTERM", 0, 6),  # right after optimizer step 6
        ("SIGINT", 2, 7),  # two batches into step 7's accumulation window: waits for step 7
    ],
)
def test_sigterm_and_sigint_stop_at_an_optimizer_step_with_a_resumable_last_checkpoint(
    tiny_teacher_dir, corpus_dir, uninterrupted, tmp_path, name, batch_in_step, stops_at
):
    handlers_before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(TrainingInterrupted) as stopped:
        _fit(tiny_teacher_dir, corpus_dir, tmp_path, callbacks=[SignalAtStep(6, name, batch_in_step)])
    signum = getattr(signal, name)
    assert stopped.value.code == 128 + signum and stopped.value.step == stops_at
    assert {s: signal.getsignal(s) for s in handlers_before} == handlers_before  # handlers put back
    record = read_last_record(tmp_path / "checkpoints")
    assert record["step"] == stops_at and record["reason"] == name and record["diverged_at_step"] is None
    module, trainer, _ = _fit(tiny_teacher_dir, corpus_dir, tmp_path, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert _max_abs_diff(_weights(module), uninterrupted) <= TOLERANCE


class _PoisonAfter(L.Callback):
    """Makes the student's weights NaN right after optimizer step ``step`` (before it is checkpointed)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.student.vocab_projector.bias.fill_(float("nan"))


def test_a_nan_stop_keeps_the_last_finite_checkpoint_and_says_which(tiny_teacher_dir, corpus_dir, tmp_path):
    with pytest.warns(UserWarning, match="holds step 2, the last step whose loss and weights were finite"):
        with pytest.raises(NonFiniteLossError):
            _fit(tiny_teacher_dir, corpus_dir, tmp_path, callbacks=[_PoisonAfter(4)], every=2)
    record = read_last_record(tmp_path / "checkpoints")
    assert record["step"] == 2 and record["diverged_at_step"] == 4  # step 4's checkpoint was refused
    assert not (tmp_path / "checkpoints" / "step00000004.ckpt").exists()
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())


def test_a_save_on_a_full_disk_leaves_nothing_partial_and_names_the_step_last_holds(
    tiny_teacher_dir, corpus_dir, uninterrupted, tmp_path, monkeypatch
):
    folder = tmp_path / "checkpoints"
    full_disk = DiskFullAtSave(3, room=65536, watch=folder)  # steps 3 and 6 land; step 9 fills the disk
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as failed:
        _fit(tiny_teacher_dir, corpus_dir, tmp_path, every=3)
    assert str(failed.value) == (
        f"could not write the checkpoint of optimizer step 9 in {folder}: [Errno 28] No space left on device. "
        f"{folder / 'last.ckpt'} holds step 6; free space there (or point paths.cache_dir at a larger disk) "
        "and continue with ckpt_path=last."
    )
    # The partial bytes went to a temp file in the checkpoint's own folder (not /tmp), which is gone now.
    (partial,) = [name for name in full_disk.files_at_failure if name.startswith(".step00000009.ckpt.")]
    assert full_disk.files_at_failure[partial] == 65536
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "last.json", "step00000003.ckpt", "step00000006.ckpt"]
    assert read_last_record(folder)["step"] == 6
    state = torch.load(folder / "last.ckpt", weights_only=False)
    assert state["global_step"] == 6
    (callback_state,) = [v for k, v in state["callbacks"].items() if k.startswith("ResumableCheckpoint")]
    assert callback_state == {"last_finite_step": 6}
    monkeypatch.undo()
    module, trainer, checkpoint = _fit(tiny_teacher_dir, corpus_dir, tmp_path, ckpt_path=str(folder / "last.ckpt"))
    assert isinstance(trainer.strategy.checkpoint_io, FolderLocalCheckpointIO)
    assert trainer.global_step == EPOCHS * STEPS_PER_EPOCH and checkpoint.last_finite_step == 6
    assert _max_abs_diff(_weights(module), uninterrupted) <= TOLERANCE


def test_schedule_length_is_computed_without_building_the_loader(tiny_teacher_dir, corpus_dir, tmp_path):
    module, trainer, _ = _fit(tiny_teacher_dir, corpus_dir, tmp_path, max_epochs=1)
    # The value Lightning's estimated_stepping_batches path gave: len(loader) of this rank.
    assert trainer.num_training_batches == SEQUENCES // BATCH == module._train_batches_per_epoch()
    assert module.total_optimizer_steps() == int(SEQUENCES // BATCH / ACCUMULATE * 1) + 1


def _rank_state(device_type: str, marker: int) -> dict:
    generator = torch.Generator().manual_seed(marker)
    return {
        "device_type": device_type,
        "mask_generator": {device_type: generator.get_state()},
        "global": {"cpu": torch.Generator().manual_seed(marker + 1).get_state()},
    }


def test_every_rank_restores_its_own_rng_state(tiny_teacher_dir, corpus_dir, monkeypatch):
    module, _ = _build(tiny_teacher_dir, corpus_dir)
    checkpoint = {
        "global_step": 5,
        RNG_CHECKPOINT_KEY: {"world_size": 2, "ranks": {0: _rank_state("cpu", 10), 1: _rank_state("cpu", 20)}},
    }
    monkeypatch.setattr(DistillationModule, "global_rank", property(lambda self: 1))
    module.on_load_checkpoint(checkpoint)
    module.on_train_batch_start(None, 0)
    expected_mask = torch.rand(4, generator=torch.Generator().manual_seed(20))
    expected_dropout = torch.rand(4, generator=torch.Generator().manual_seed(21))
    assert torch.equal(torch.rand(4, generator=module.mask_generator()), expected_mask)
    assert torch.equal(torch.rand(4), expected_dropout)


def test_rng_state_from_another_device_type_warns_and_reseeds_deterministically(tiny_teacher_dir, corpus_dir):
    # A checkpoint written on CUDA: the masking state is a CUDA (Philox) state under "cuda".
    cuda_state = {
        "device_type": "cuda",
        "mask_generator": {"cuda": torch.zeros(16, dtype=torch.uint8)},
        "global": {"cpu": torch.Generator().manual_seed(3).get_state(), "cuda": torch.zeros(16, dtype=torch.uint8)},
    }
    draws = []
    for _ in range(2):
        module, _ = _build(tiny_teacher_dir, corpus_dir)
        module.on_load_checkpoint({"global_step": 7, RNG_CHECKPOINT_KEY: {"world_size": 1, "ranks": {0: cuda_state}}})
        with pytest.warns(RuntimeWarning, match="saved on cuda .*masking and dropout stream.*reseeded deterministically"):
            module.on_train_batch_start(None, 0)
        draws.append(torch.rand(8, generator=module.mask_generator()))
    assert torch.equal(draws[0], draws[1])  # the same reseed every time: reproducible
    fresh, _ = _build(tiny_teacher_dir, corpus_dir)
    assert not torch.equal(draws[0], torch.rand(8, generator=fresh.mask_generator()))  # not the step-0 stream


def test_a_checkpoint_without_rng_state_warns(tiny_teacher_dir, corpus_dir):
    module, _ = _build(tiny_teacher_dir, corpus_dir)
    with pytest.warns(UserWarning, match="no RNG state for global rank 0"):
        module.on_load_checkpoint({"global_step": 3})
    module.on_train_batch_start(None, 0)  # reseeds, does not crash


# --- ckpt_path=last resolution ------------------------------------------------------------------
IDENTITY = {"teacher": {"path_hash": "t1"}, "corpus": "c1", "recipe": "r-new", "effective": {"world_size": 1}}
RECIPE = {"distill": {"optimizer": {"lr": 0.001}, "batch_size": 5}, "student": {"num_layers": 2}}


def test_ckpt_path_last_without_a_checkpoint_lists_sibling_runs_and_what_differs(tmp_path):
    students = tmp_path / "students"
    old = students / "aaaa.work"
    write_run_record(old, {**IDENTITY, "recipe": "r-old", "effective": {"world_size": 2}},
                     {"distill": {"optimizer": {"lr": 0.0005}, "batch_size": 5}, "student": {"num_layers": 2}})
    (old / "checkpoints").mkdir()
    (old / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (old / "checkpoints" / "last.json").write_text(json.dumps({"step": 40}))
    write_run_record(students / "bbbb.work", {**IDENTITY, "corpus": "other"}, RECIPE)  # another corpus: not listed
    mine = students / "cccc.work"
    with pytest.raises(ResumeCheckpointNotFound) as error:
        resolve_resume_checkpoint("last", mine, IDENTITY, RECIPE)
    message = str(error.value)
    assert str(mine) in message and str(old) in message and "bbbb" not in message
    assert "last.ckpt at step 40" in message
    assert "recipe.distill.optimizer.lr: 0.0005 -> 0.001" in message and "effective.world_size: 2 -> 1" in message
    assert "batch_size" not in message  # only what differs


def test_ckpt_path_resolution(tmp_path, caplog):
    work = tmp_path / "students" / "cccc.work"
    with pytest.raises(ResumeCheckpointNotFound, match="No other run of this teacher and corpus"):
        resolve_resume_checkpoint("last", work, IDENTITY, RECIPE)
    with pytest.raises(ResumeCheckpointNotFound, match="no such checkpoint file"):
        resolve_resume_checkpoint(str(tmp_path / "missing.ckpt"), work, IDENTITY, RECIPE)
    assert resolve_resume_checkpoint(None, work, IDENTITY, RECIPE) is None
    (work / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 3}, work / "checkpoints" / "last.ckpt")
    assert resolve_resume_checkpoint("last", work, IDENTITY, RECIPE) == str(work / "checkpoints" / "last.ckpt")
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint(None, work, IDENTITY, RECIPE) is None
    assert "Pass ckpt_path=last to continue it" in caplog.text


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a checkpoint"])
def test_a_damaged_checkpoint_is_refused_before_loading_and_names_the_others(tmp_path, damage):
    folder = tmp_path / "students" / "cccc.work" / "checkpoints"
    folder.mkdir(parents=True)
    state = {"global_step": 6, "weights": torch.arange(4096, dtype=torch.float32)}
    torch.save({**state, "global_step": 3}, folder / "step00000003.ckpt")
    torch.save(state, folder / "step00000006.ckpt")
    os.link(folder / "step00000006.ckpt", folder / "last.ckpt")  # as ResumableCheckpoint leaves it
    data = bytearray((folder / "last.ckpt").read_bytes())
    damaged = {"truncated": data[: len(data) // 2], "not a checkpoint": b"version https://git-lfs.github.com\n"}
    if damage == "flipped byte":  # torch.load would not notice: it does not check the zip CRCs
        data[len(data) // 2] ^= 0xFF
        damaged[damage] = data
    with open(folder / "last.ckpt", "r+b") as handle:  # in place: the step file is the same inode
        handle.truncate(0)
        handle.write(damaged[damage])
    with pytest.raises(CorruptCheckpoint) as refused:
        resolve_resume_checkpoint("last", folder.parent, IDENTITY, RECIPE)
    message = str(refused.value)
    assert message.startswith(f"ckpt_path=last: {folder / 'last.ckpt'} is cut short or damaged (")
    assert message.endswith(f"Other checkpoints in {folder}: step00000003.ckpt; pass one as ckpt_path=<file>, "
                            "or start afresh without ckpt_path.")
    assert ("fails its checksum" in message) == (damage == "flipped byte")
    lone = tmp_path / "elsewhere" / "model.ckpt"  # an explicit ckpt_path in a folder of its own
    lone.parent.mkdir()
    lone.write_bytes(damaged["not a checkpoint"])
    with pytest.raises(CorruptCheckpoint, match=r"\(not a complete PyTorch checkpoint: File is not a zip file\)\. "
                       "Start afresh without ckpt_path"):
        resolve_resume_checkpoint(str(lone), folder.parent, IDENTITY, RECIPE)


# --- the CLI, killed with SIGKILL and resumed ----------------------------------------------------------
def _cli_overrides(teacher: Path, text_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "task=distill", f"teacher.name_or_path={teacher}", f"corpus.dir={text_dir}", "student.num_layers=2",
        "logger=none", "distill.batch_size=4", "distill.trainer.accumulate_grad_batches=3",
        "distill.checkpoint_every_n_steps=3", "trainer.enable_progress_bar=false", "trainer.deterministic=true",
        f"paths.cache_dir={cache}", f"paths.log_dir={cache.parent / 'logs'}", f"paths.output_dir={cache.parent / 'out'}",
        *extra,
    ]


def _run_cli(overrides: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "run.py", *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, env=env)


def _exported(cache: Path) -> dict[str, torch.Tensor]:
    (folder,) = [p for p in (cache / "students").iterdir() if (p / "manifest.json").exists()]
    return load_file(folder / "model.safetensors")


@pytest.fixture()
def text_dir(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    words = "my order refund delivery account password card payment help cancel change track".split()
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(10 + i % 17)) for i in range(40)]
    (folder / "eng.txt").write_text("\n".join(lines) + "\n")
    return folder


def _kill_and_resume(tiny_teacher_dir, text_dir, tmp_path, kill_step: int, *extra: str, make_cfg=None) -> float:
    """A run SIGKILLed after optimizer step ``kill_step`` and resumed with ckpt_path=last, against an
    uninterrupted run (in-process through ``make_cfg`` when given: one process start fewer)."""
    reference_cache = tmp_path / "cache"  # where make_cfg points paths.cache_dir
    if make_cfg is not None:
        from domain_distil.tasks.distill import ensure_student

        ensure_student(make_cfg(*_cli_overrides(tiny_teacher_dir, text_dir, reference_cache, *extra)))
    else:
        reference = _run_cli(_cli_overrides(tiny_teacher_dir, text_dir, reference_cache, *extra))
        assert reference.returncode == 0, reference.stderr[-3000:]
    cache = tmp_path / "b" / "cache"
    kill = f"distill.callbacks=[{{_target_:tests.fault_injection.SignalAtStep,step:{kill_step},signal:SIGKILL}}]"
    killed = _run_cli(_cli_overrides(tiny_teacher_dir, text_dir, cache, *extra, kill))
    assert killed.returncode != 0 and not any((cache / "students").glob("*/manifest.json"))
    (work,) = (cache / "students").glob("*.work")
    assert (work / "checkpoints" / "last.ckpt").exists() and (work / "run.json").exists()
    resumed = _run_cli(_cli_overrides(tiny_teacher_dir, text_dir, cache, *extra, "ckpt_path=last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    difference = _max_abs_diff(_exported(cache), _exported(reference_cache))
    print(f"max abs weight difference after resume: {difference:.3g}")
    return difference


@pytest.mark.slow
def test_cli_sigkill_in_epoch_3_of_4_then_ckpt_path_last_is_exact(make_cfg, tiny_teacher_dir, text_dir, tmp_path):
    # 40 sequences / 4 = 10 batches, accumulation 3: 4 optimizer steps an epoch; step 10 is in epoch 3,
    # the newest checkpoint (every 3 steps) is step 9, mid-epoch 3.
    epochs_mode = "distill.trainer.max_epochs=4"
    assert _kill_and_resume(tiny_teacher_dir, text_dir, tmp_path, 10, epochs_mode, make_cfg=make_cfg) <= TOLERANCE


@pytest.mark.slow
def test_cli_sigkill_mid_epoch_in_steps_mode_then_ckpt_path_last_is_exact(make_cfg, tiny_teacher_dir, text_dir, tmp_path):
    steps_mode = ("distill.trainer.max_epochs=-1", "distill.trainer.max_steps=8")
    assert _kill_and_resume(tiny_teacher_dir, text_dir, tmp_path, 5, *steps_mode, make_cfg=make_cfg) <= TOLERANCE


@pytest.mark.slow
def test_cli_sigkill_under_two_process_ddp_then_ckpt_path_last_is_exact(tiny_teacher_dir, text_dir, tmp_path):
    # Per rank: 20 sequences / 4 = 5 batches, accumulation 3: 2 steps an epoch; 3 epochs = 6 steps.
    # Both ranks die after step 4 (epoch 3); last.ckpt is step 3, mid-epoch 2, with both ranks' RNG.
    ddp = ("trainer.devices=2", "+trainer.strategy=ddp", "distill.trainer.max_epochs=3")
    assert _kill_and_resume(tiny_teacher_dir, text_dir, tmp_path, 4, *ddp) <= TOLERANCE


def _error_line(code: int, err: str) -> str:
    """The one ``error: ...`` line of a refused command (Lightning's INFO lines may precede it)."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, (code, err[-3000:])
    return errors[0]


def test_sigterm_then_every_resume_refusal_is_one_line_through_the_cli(
    monkeypatch, capsys, tiny_teacher_dir, text_dir, tmp_path
):
    from test_cli_errors import run_cli

    cache = tmp_path / "cache"
    base = _cli_overrides(tiny_teacher_dir, text_dir, cache)
    stop = "distill.callbacks=[{_target_:tests.fault_injection.SignalAtStep,step:2,signal:SIGTERM}]"
    code, err = run_cli(monkeypatch, capsys, tmp_path, *base, stop)
    (work,) = (cache / "students").glob("*.work")
    assert code == 128 + signal.SIGTERM
    assert (f"SIGTERM received: stopped at optimizer step 2; continue with ckpt_path=last "
            f"({work / 'checkpoints' / 'last.ckpt'} holds that step)") in err.splitlines()

    line = _error_line(*run_cli(monkeypatch, capsys, tmp_path, *base, "distill.optimizer.lr=0.001", "ckpt_path=last"))
    assert f"- {work} (last.ckpt at step 2," in line and "recipe.distill.optimizer.lr: 0.0005 -> 0.001" in line

    original = (text_dir / "eng.txt").read_text()
    (text_dir / "eng.txt").write_text(original + "one more line about a refund that never arrived\n")
    line = _error_line(*run_cli(monkeypatch, capsys, tmp_path, *base, "ckpt_path=last"))
    assert f"- {work} (last.ckpt at step 2," in line and "the corpus content differs from the run's" in line
    assert "No other run" not in line

    elsewhere = tmp_path / "other_texts"
    elsewhere.mkdir()
    (elsewhere / "eng.txt").write_text("".join(reversed(original.splitlines(keepends=True))))  # another corpus
    overrides = _cli_overrides(tiny_teacher_dir, elsewhere, cache, "ckpt_path=last")
    line = _error_line(*run_cli(monkeypatch, capsys, tmp_path, *overrides))
    assert "No other run of this teacher and corpus exists either; start afresh without ckpt_path." in line

    (text_dir / "eng.txt").write_text(original)
    last = work / "checkpoints" / "last.ckpt"
    with open(last, "r+b") as handle:  # cut short in place (the step file is the same inode)
        handle.truncate(last.stat().st_size // 2)
    line = _error_line(*run_cli(monkeypatch, capsys, tmp_path, *base, "ckpt_path=last"))
    assert line.startswith(f"error: ckpt_path=last: {last} is cut short or damaged (not a complete PyTorch")
