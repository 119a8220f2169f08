"""ClassifierModule: frozen encoder stays fixed and in eval; fine-tuning trains it at its own LR."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from tiny_tasks import intent_rows, write_jsonl
from transformers import AutoModel, AutoTokenizer

from datamodules.task import TaskDataModule
from domain_distil.classification.taskfile import TaskSpec
from domain_distil.modeling.heads import SelfAttentionHead
from lightning_modules.classifier import ClassifierModule

SPEC = TaskSpec(name="cc_intent", type="binary", labels=("intentful", "not_intentful"), positive_label="intentful")


def _setup(tiny_teacher_dir: Path, tmp_path: Path, freeze: bool):
    L.seed_everything(0)
    encoder = AutoModel.from_pretrained(tiny_teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    datamodule = TaskDataModule.from_files(SPEC, "eng", files=[write_jsonl(tmp_path / "cc.jsonl", intent_rows())],
                                           batch_size=8, tokenizer=tokenizer, max_length=16)
    assert datamodule.splits.counts() == {"train": 22, "val": 8, "test": 8}
    head = SelfAttentionHead(32, 2, attention_dim=16, num_hops=2, hidden_dim=8)
    module = ClassifierModule(head=head, task_type="binary", num_labels=2,
                              optimizer=partial(torch.optim.AdamW, lr=1e-2), encoder=encoder, freeze=freeze,
                              encoder_lr=1e-3)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return module, datamodule, trainer


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_frozen_encoder_weights_unchanged_and_in_eval(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    module, datamodule, trainer = _setup(tiny_teacher_dir, tmp_path, freeze=True)
    encoder_before, head_before = _snapshot(module.encoder), _snapshot(module.head)
    seen_modes: list[bool] = []
    module.encoder.register_forward_hook(lambda mod, args, out: seen_modes.append(mod.training))
    trainer.fit(module, datamodule=datamodule)

    assert seen_modes and not any(seen_modes)  # every encoder call ran in eval mode (no dropout)
    assert all(torch.equal(v, encoder_before[k]) for k, v in module.encoder.state_dict().items())
    assert any(not torch.equal(v, head_before[k]) for k, v in module.head.state_dict().items())
    assert not any(p.requires_grad for p in module.encoder.parameters())
    optimizer_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimizer_params & {id(p) for p in module.encoder.parameters()}

    # Checkpoints leave the frozen encoder out and still load back.
    path = tmp_path / "frozen.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert state and not [k for k in state if k.startswith("encoder.")]
    assert any(k.startswith("head.") for k in state)


def test_finetuning_trains_encoder_with_its_own_lr(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    module, datamodule, trainer = _setup(tiny_teacher_dir, tmp_path, freeze=False)
    assert module.encoder.training  # from_pretrained returns eval mode; fine-tuning needs dropout on
    encoder_before = _snapshot(module.encoder)
    trainer.fit(module, datamodule=datamodule)
    changed = [k for k, v in module.encoder.state_dict().items() if not torch.equal(v, encoder_before[k])]
    assert changed
    groups = trainer.optimizers[0].param_groups
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]


class _StepLosses(L.Callback):
    """Records every training step's loss and batch size, to check the logged epoch mean."""

    def __init__(self) -> None:
        self.losses: list[tuple[float, int]] = []
        self.logged: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append((float(outputs["loss"]), int(batch["targets"].size(0))))

    # Callbacks' epoch-end hooks run before the module's, which logs the epoch mean: read it when
    # the next epoch starts, and at the end of training.
    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch > 0:
            self.logged.append(float(trainer.callback_metrics["train/loss"]))

    def on_train_end(self, trainer, module) -> None:
        self.logged.append(float(trainer.callback_metrics["train/loss"]))


def test_logged_epoch_losses_are_the_size_weighted_step_means(tiny_teacher_dir: Path, tmp_path: Path) -> None:
    # Losses are accumulated per step and logged once per epoch (a self.log per step cost as much
    # as a head step): the logged value must still be the mean over the epoch's examples.
    module, datamodule, _ = _setup(tiny_teacher_dir, tmp_path, freeze=True)
    recorder = _StepLosses()
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[recorder])
    trainer.fit(module, datamodule=datamodule)
    per_epoch = len(recorder.losses) // 2
    assert per_epoch == 3 and len(recorder.logged) == 2  # 22 rows in batches of 8: 8 + 8 + 6, so the weights differ
    for epoch, logged in enumerate(recorder.logged):
        steps = recorder.losses[epoch * per_epoch : (epoch + 1) * per_epoch]
        expected = sum(loss * size for loss, size in steps) / sum(size for _, size in steps)
        assert logged == pytest.approx(expected, rel=1e-6)
    assert {"val/loss", "val/f1", "train/penalty"} <= set(trainer.callback_metrics)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert results["test/loss"] > 0 and 0 <= results["test/f1"] <= 1
