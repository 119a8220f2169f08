"""DistillationModule: the reference Distil* training step as a LightningModule.

The teacher is deliberately NOT a registered submodule: it never reaches the optimizer, DDP never
wraps or broadcasts it, checkpoints don't carry its weights, and ``LightningModule.train()`` can
never flip it out of eval mode. The module moves it to the right device itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch.optim import Optimizer
from transformers import PreTrainedModel

from domain_distil.modeling.distill_losses import (
    LossWeights,
    cosine_hidden_loss,
    logit_mse_loss,
    mlm_loss,
    select_rows,
    soft_target_loss,
)
from domain_distil.modeling.masking import MaskingConfig, mask_tokens, token_probabilities
from domain_distil.modeling.mlm import mlm_body, mlm_head


class NonFiniteLossError(RuntimeError):
    pass


def reference_total_steps(batches_per_epoch: int, accumulate: int, max_epochs: int) -> int:
    """The reference schedule length: ``int(len(dataloader) / grad_accum * n_epoch) + 1``."""
    return int(batches_per_epoch / accumulate * max_epochs) + 1


def linear_warmup_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """``get_linear_schedule_with_warmup``: step/warmup, then (total-step)/(total-warmup), floored at 0."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return multiplier


class DistillationModule(L.LightningModule):
    def __init__(
        self,
        student: PreTrainedModel,
        teacher: PreTrainedModel,
        token_counts: torch.Tensor,
        special_token_ids: list[int],
        mask_token_id: int,
        pad_token_id: int,
        optimizer: Callable[..., Optimizer],
        loss_weights: LossWeights | None = None,
        masking: MaskingConfig | None = None,
        warmup_prop: float = 0.05,
        seed: int = 56,
    ) -> None:
        super().__init__()
        loss_weights = loss_weights or LossWeights()
        masking = masking or MaskingConfig()
        loss_weights.validate()
        masking.validate()
        self.student = student
        self._teacher = [teacher.eval().requires_grad_(False)]  # a list keeps it out of the module tree
        self.optimizer_factory = optimizer
        self.loss_weights = loss_weights
        self.masking = masking
        self.warmup_prop = warmup_prop
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
        self.vocab_size = student.config.vocab_size
        self.register_buffer(
            "token_probs",
            token_probabilities(token_counts, special_token_ids, masking.mlm_smoothing),
            persistent=False,
        )
        self.mask_seed = seed
        self._mask_generator: torch.Generator | None = None
        self._pending_rng: tuple[torch.Tensor | None, torch.Tensor | None] | None = None
        # Plain values only: the models are rebuilt from the export, not from hyperparameters.
        self.save_hyperparameters(
            {
                "loss_weights": asdict(loss_weights),
                "masking": asdict(masking),
                "warmup_prop": warmup_prop,
                "seed": seed,
                "mask_token_id": mask_token_id,
                "pad_token_id": pad_token_id,
            }
        )

    @property
    def teacher(self) -> PreTrainedModel:
        return self._teacher[0]

    # --- device and mode bookkeeping -------------------------------------------------------
    def setup(self, stage: str) -> None:
        self.teacher.to(self.device)

    def on_fit_start(self) -> None:
        self.teacher.to(self.device).eval()

    def on_train_epoch_start(self) -> None:
        self.teacher.eval()  # belt and braces: nothing may ever switch dropout on in the teacher

    def mask_generator(self) -> torch.Generator:
        if self._mask_generator is None or self._mask_generator.device != self.device:
            generator = torch.Generator(device=self.device)
            # Distinct streams per rank, reproducible per seed.
            generator.manual_seed(self.mask_seed + 1_000_003 * self.global_rank)
            # Carry a restored stream over when possible (CPU and CUDA generator states differ).
            if self._mask_generator is not None and self._mask_generator.device.type == self.device.type:
                generator.set_state(self._mask_generator.get_state())
            self._mask_generator = generator
        return self._mask_generator

    # --- the step ---------------------------------------------------------------------------
    def compute_loss(
        self, token_ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = mask_tokens(
            token_ids,
            lengths,
            self.token_probs,
            self.mask_token_id,
            self.pad_token_id,
            self.vocab_size,
            self.masking,
            generator=self.mask_generator(),
        )
        weights = self.loss_weights
        with torch.no_grad():
            teacher_hidden = mlm_body(self.teacher)(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            )[0]
        student_hidden = mlm_body(self.student)(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        )[0]

        terms: dict[str, torch.Tensor] = {}
        if weights.needs_student_logits:
            # Without KL/MSE the head only has to run where the MLM loss looks: the targets.
            restrict = weights.restrict_ce_to_mask or not weights.needs_teacher_logits
            rows = select_rows(batch.attention_mask, batch.labels, restrict)
            student_rows = mlm_head(self.student)(student_hidden[rows])  # (N, V)
            if weights.needs_teacher_logits:
                with torch.no_grad():
                    teacher_rows = mlm_head(self.teacher)(teacher_hidden[rows])
                if weights.alpha_ce > 0:
                    terms["ce"] = soft_target_loss(student_rows, teacher_rows, weights.temperature)
                if weights.alpha_mse > 0:
                    terms["mse"] = logit_mse_loss(student_rows, teacher_rows)
            if weights.alpha_mlm > 0:
                terms["mlm"] = mlm_loss(student_rows, batch.labels[rows])
        if weights.alpha_cos > 0:
            terms["cos"] = cosine_hidden_loss(student_hidden, teacher_hidden, batch.attention_mask)
        alphas = {
            "ce": weights.alpha_ce,
            "mlm": weights.alpha_mlm,
            "mse": weights.alpha_mse,
            "cos": weights.alpha_cos,
        }
        total = sum(alphas[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, terms = self.compute_loss(batch["input_ids"], batch["lengths"])
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"NaN/inf distillation loss at global step {self.global_step} (batch {batch_idx}): terms "
                f"{ {k: float(v) for k, v in terms.items()} }. Lower distill.optimizer.lr, check the corpus for "
                "empty or corrupt sequences, or use precision=32-true / bf16-mixed instead of 16-mixed."
            )
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["lengths"]))
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value, batch_size=len(batch["lengths"]))
        # Lightning divides by accumulate_grad_batches itself; dividing here too would be the double
        # division the reference warns about.
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        # Only the student's trainable parameters; the no-decay groups follow the reference's names.
        decay, no_decay = [], []
        for name, param in self.student.named_parameters():
            if not param.requires_grad:
                continue
            (
                no_decay
                if "bias" in name or "LayerNorm.weight" in name or "layer_norm.weight" in name
                else decay
            ).append(param)
        optimizer = self.optimizer_factory(
            params=[{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        )
        total = self.total_optimizer_steps()
        warmup = math.ceil(total * self.warmup_prop)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(warmup, total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def total_optimizer_steps(self) -> int:
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        _ = trainer.estimated_stepping_batches  # makes Lightning size the train loader (per rank)
        return reference_total_steps(
            int(trainer.num_training_batches), trainer.accumulate_grad_batches, trainer.max_epochs
        )

    # --- exact resume: the masking stream and the dropout RNG are part of the state ------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mask_generator_state"] = self.mask_generator().get_state()
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["cuda_rng_state"] = torch.cuda.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "mask_generator_state" in checkpoint:
            generator = torch.Generator()
            generator.set_state(checkpoint["mask_generator_state"])
            self._mask_generator = generator
        # Applied just before the next training step, not now: between restoring a checkpoint and
        # that step Lightning creates the DataLoader iterator, which draws from the global RNG.
        self._pending_rng = (checkpoint.get("torch_rng_state"), checkpoint.get("cuda_rng_state"))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        pending = getattr(self, "_pending_rng", None)
        if pending is None:
            return
        cpu_state, cuda_state = pending
        if cpu_state is not None:
            torch.set_rng_state(cpu_state)
        if cuda_state is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda_state)
        self._pending_rng = None
