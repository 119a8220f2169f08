"""DistillationModule: the reference Distil* training step as a LightningModule.

The teacher is deliberately NOT a registered submodule: it never reaches the optimizer, DDP never
wraps or broadcasts it, checkpoints don't carry its weights, and ``LightningModule.train()`` can
never flip it out of eval mode. The module moves it to the right device itself.

With a trimmed student (``kept_vocabulary``, ``student.vocab=trim``) the corpus keeps the
teacher's ids: the teacher reads them as stored, the student reads them through the registered
buffer ``old_to_new`` (a dropped id becomes the student's unk). Masking runs in the student's id
space over the kept vocabulary (probabilities ``count ** -0.7`` of the kept ids, random
replacements drawn from kept ids) and the teacher is fed the same corruption in its own ids; the
MLM labels are student ids; the teacher's logits are taken on the kept ids only, so the soft
target is the teacher's distribution renormalised over the kept vocabulary (see
``modeling/objectives/paper.py: soft_target_loss``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim import Optimizer
from transformers import PreTrainedModel

from domain_distil.modeling.masking import MaskedBatch, MaskingConfig, mask_tokens, token_probabilities
from domain_distil.modeling.mlm import mlm_head
from domain_distil.modeling.objectives import Objective, PairShape, TermInputs, run_body
from domain_distil.modeling.vocab_trim import KeptVocabulary, KeptVocabularyHead

# Where every rank's generator states live in a Lightning checkpoint:
# {"world_size": W, "ranks": {rank: {"device_type", "mask_generator": {type: state}, "global": {type: state}}}}
RNG_CHECKPOINT_KEY = "distill_rng"


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
        objective: Objective | None = None,
        masking: MaskingConfig | None = None,
        warmup_prop: float = 0.05,
        seed: int = 56,
        kept_vocabulary: KeptVocabulary | None = None,
    ) -> None:
        super().__init__()
        objective = objective or Objective.paper()
        masking = masking or MaskingConfig()
        objective.validate()
        masking.validate()
        # What the running terms need from each model, fixed for the run: nothing is asked for in vain.
        self.pair = PairShape.of(student.config, teacher.config)
        objective.check(self.pair)
        self.student_needs, self.teacher_needs = objective.needs(self.pair)
        self.student = student
        self._teacher = [teacher.eval().requires_grad_(False)]  # a list keeps it out of the module tree
        self.optimizer_factory = optimizer
        self.objective = objective
        # The weighted sum of the terms; compile_loss() swaps in a compiled one (distill.compile).
        self._objective_loss = objective.loss
        self.masking = masking
        self.warmup_prop = warmup_prop
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
        self.vocab_size = student.config.vocab_size
        token_probs = token_probabilities(token_counts, special_token_ids, masking.mlm_smoothing)
        self.kept_vocabulary = kept_vocabulary
        self._teacher_kept_head: KeptVocabularyHead | None = None  # built on the teacher's device
        if kept_vocabulary is None:
            self.register_buffer("old_to_new", None)
            self.register_buffer("kept_ids", None)
        else:
            kept_ids = torch.from_numpy(kept_vocabulary.kept_ids)
            if self.vocab_size != len(kept_ids):
                raise ValueError(f"the student has {self.vocab_size} vocabulary rows but {len(kept_ids)} ids are kept; "
                                 "trim it with modeling.vocab_trim.trim_masked_lm first")
            old_to_new = kept_vocabulary.old_to_new()
            self.register_buffer("old_to_new", old_to_new, persistent=False)
            self.register_buffer("kept_ids", kept_ids, persistent=False)
            # Masking runs in the student's ids: the kept ids' probabilities, and a dropped token (read
            # as unk by the student) is never a target, since its label could not be represented.
            token_probs = token_probs[kept_ids].clone()
            token_probs[old_to_new[kept_vocabulary.unk_id]] = 0.0
            self.mask_token_id, self.pad_token_id = int(old_to_new[mask_token_id]), int(old_to_new[pad_token_id])
        self.register_buffer("token_probs", token_probs, persistent=False)
        self.mask_seed = seed
        self._mask_generator: torch.Generator | None = None
        self._pending_rng: dict[str, Any] | None = None  # a restored rank's RNG state, until the next step
        self._resume_step = 0
        # Plain values only: the models are rebuilt from the export, not from hyperparameters.
        self.save_hyperparameters(
            {
                "objective": objective.settings(),
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
            self._mask_generator = generator
        return self._mask_generator

    # --- the step ---------------------------------------------------------------------------
    def compute_loss(
        self, token_ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted loss of one batch of teacher token ids (the corpus shards' ids)."""
        student_ids = token_ids if self.old_to_new is None else self.old_to_new[token_ids]
        batch = mask_tokens(
            student_ids,
            lengths,
            self.token_probs,
            self.mask_token_id,
            self.pad_token_id,
            self.vocab_size,
            self.masking,
            generator=self.mask_generator(),
        )
        total, terms = self._objective_loss(self.term_inputs(batch, token_ids, student_ids))
        return total, {name: value.detach() for name, value in terms.items()}

    def compile_loss(self) -> None:
        """``torch.compile`` the loss terms (``distill.compile``). Over (rows x vocabulary) logits the
        soft-target KL and the MLM cross-entropy are chains of element-wise passes (cast, divide,
        log-softmax, KL and their backward) that bf16 does not speed up and the compiler fuses
        (``benchmarks/distill_speed.py``). Dynamic shapes: the number of rows varies by batch."""
        self._objective_loss = torch.compile(self.objective.loss, dynamic=True)

    def term_inputs(self, batch: MaskedBatch, token_ids: torch.Tensor, student_ids: torch.Tensor) -> TermInputs:
        """Both forwards, exposing what the running terms need, and the MLM heads on the rows they read."""
        teacher_ids = batch.input_ids
        if self.kept_ids is not None:
            # Unchanged positions keep the stored teacher id (also for a dropped token); a [MASK] or
            # a random replacement is the teacher id of the student's kept id.
            teacher_ids = torch.where(batch.input_ids == student_ids, token_ids, self.kept_ids[batch.input_ids])
        with torch.no_grad():
            teacher = run_body(self.teacher, teacher_ids, batch.attention_mask, self.teacher_needs)
        student = run_body(self.student, batch.input_ids, batch.attention_mask, self.student_needs)
        inputs = TermInputs(batch.attention_mask, batch.labels, student, teacher, self.pair)
        if self.objective.needs_student_logits:
            # Without KL/MSE the head only has to run where the MLM loss looks: the targets.
            inputs.rows = self.objective.logit_rows(batch.attention_mask, batch.labels)
            inputs.student_logits = mlm_head(self.student)(student.last_hidden[inputs.rows])  # (N, V)
            if self.objective.needs_teacher_logits:
                with torch.no_grad():
                    inputs.teacher_logits = self.teacher_logits(teacher.last_hidden[inputs.rows])
        return inputs

    def teacher_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The teacher's MLM logits on the student's vocabulary: all ids, or the kept ids only.

        For a trimmed student this equals ``mlm_head(teacher)(hidden).index_select(-1, kept_ids)``
        but never computes the dropped columns.
        """
        if self.kept_ids is None:
            return mlm_head(self.teacher)(hidden)
        head = self._teacher_kept_head
        if head is None or head.weight.device != hidden.device:
            head = self._teacher_kept_head = KeptVocabularyHead(self.teacher, self.kept_ids.to(hidden.device))
            head.to(hidden.device)
        return head(hidden)

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
        return reference_total_steps(
            self._train_batches_per_epoch(), trainer.accumulate_grad_batches, trainer.max_epochs
        )

    def _train_batches_per_epoch(self) -> int:
        """``len(train_dataloader)`` on this rank, without building the loader.

        Not ``trainer.estimated_stepping_batches``: it creates the loader's iterator here, inside
        ``configure_optimizers``, before Lightning restores the loop state from a checkpoint, so
        a run resumed in epoch 3 would be fed epoch 0's batches.
        """
        trainer = self.trainer
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "batches_per_epoch"):
            raise TypeError(
                "DistillationModule needs a datamodule with batches_per_epoch() (e.g. DistillDataModule) to size "
                f"the learning-rate schedule without building the loader early; got {type(datamodule).__name__}. "
                "Set trainer max_steps instead to train from plain dataloaders."
            )
        batches = int(datamodule.batches_per_epoch())
        limit = trainer.limit_train_batches  # the same arithmetic as Lightning's num_training_batches
        if isinstance(limit, int):
            return min(batches, limit)
        return int(batches * limit)

    # --- exact resume: every rank's masking stream and dropout RNG are part of the state ------
    def _local_rng_state(self) -> dict[str, Any]:
        """This rank's generators, keyed by device type (CPU and CUDA states are not interchangeable)."""
        device_type = self.device.type
        state: dict[str, Any] = {
            "device_type": device_type,
            "mask_generator": {device_type: self.mask_generator().get_state()},
            "global": {"cpu": torch.get_rng_state()},  # dropout on CPU; anything drawn on the host
        }
        if device_type == "cuda":
            state["global"]["cuda"] = torch.cuda.get_rng_state(self.device)  # dropout on the GPU
        return state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning builds the checkpoint on every rank and writes rank 0's copy only, so each rank's
        # state is gathered into it here (this hook runs on every rank, in step).
        local = self._local_rng_state()
        world_size = self.trainer.world_size
        if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, local)
        else:
            gathered = [local]
        checkpoint[RNG_CHECKPOINT_KEY] = {"world_size": len(gathered), "ranks": dict(enumerate(gathered))}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(RNG_CHECKPOINT_KEY) or {}
        rank = self.global_rank
        rank_state = (saved.get("ranks") or {}).get(rank)
        self._resume_step = int(checkpoint.get("global_step", 0))
        if rank_state is None:
            rank_zero_warn(
                f"The checkpoint holds no RNG state for global rank {rank} (saved ranks: "
                f"{sorted(saved.get('ranks') or {})}): masking and dropout are reseeded from distill.seed and "
                "the resumed run will not match an uninterrupted one exactly."
            )
        # Applied just before the next training step, not now: the module is not on its device yet,
        # and between here and that step nothing else may draw from these generators.
        self._pending_rng = rank_state if rank_state is not None else {}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        pending, self._pending_rng = self._pending_rng, None
        if pending is not None:
            self._restore_rng(pending)

    def _restore_rng(self, state: dict[str, Any]) -> None:
        device_type = self.device.type
        # Deterministic for a given seed, rank and resume step, yet not the stream a fresh run starts with.
        reseed = self.mask_seed + 1_000_003 * self.global_rank + 7_919 * (self._resume_step + 1)
        generator = self.mask_generator()
        missing = []
        mask_states = state.get("mask_generator") or {}
        if device_type in mask_states:
            generator.set_state(mask_states[device_type])
        else:
            generator.manual_seed(reseed)
            missing.append("masking")
        global_states = state.get("global") or {}
        if "cpu" in global_states:
            torch.set_rng_state(global_states["cpu"])
        else:
            torch.manual_seed(reseed)
        if device_type == "cuda":
            if "cuda" in global_states:
                torch.cuda.set_rng_state(global_states["cuda"], self.device)
            else:
                torch.cuda.manual_seed(reseed)
                missing.append("dropout")
        elif state.get("device_type") not in (None, device_type):
            missing.append("dropout")  # the saved run drew dropout masks on its device, not here
        if state and missing:
            rank_zero_warn(
                f"Resuming on {device_type} from a checkpoint whose RNG state was saved on "
                f"{state.get('device_type') or sorted(mask_states)} (rank {self.global_rank}): the {' and '.join(missing)} "
                f"stream(s) cannot be carried over and were reseeded deterministically (seed {reseed}). Training "
                "continues, but it will not match an uninterrupted run exactly.",
                category=RuntimeWarning,
            )
