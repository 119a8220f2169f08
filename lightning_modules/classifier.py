"""ClassifierModule: an encoder (frozen or fine-tuned) plus a classifier head.

- ``freeze=True``: the encoder is in eval mode with ``requires_grad=False`` for the whole fit
  (Lightning >= 2.2 restores per-module modes after validation, so ``train()`` is overridden to
  keep it in eval), runs under ``no_grad``, is left out of the optimizer and out of checkpoints.
  Batches may also bring precomputed encoder outputs (``hidden``: the feature cache), in which
  case the encoder is not needed at all and may be ``None``.
- ``freeze=False``: encoder and head are trained together; the encoder gets its own, lower,
  learning rate; the scheduler (linear warmup then decay, by default) steps every batch.

Loss = task loss (cross-entropy / BCE-with-logits) + ``penalty_coef`` · ‖AAᵀ − I‖²_F.
Metrics (``classification.metrics``) are accumulated over the epoch and computed once per epoch;
``val/f1`` drives checkpoint selection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric

from domain_distil.classification.metrics import (
    Threshold,
    build_metrics,
    predictions,
    probabilities,
    task_loss,
    threshold_tensor,
    tune_threshold,
)
from domain_distil.modeling.heads import HeadOutput

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class ClassifierModule(L.LightningModule):
    """Encoder + head for one classification job.

    :param head: maps (hidden (B, n, d), attention_mask (B, n)) to a :class:`HeadOutput`.
    :param task_type: ``binary`` or ``multilabel``.
    :param num_labels: label count (2 for binary).
    :param optimizer: ``_partial_`` optimizer, called with the parameter groups.
    :param scheduler: ``_partial_`` scheduler called as ``scheduler(optimizer, num_warmup_steps=,
        num_training_steps=)`` (e.g. ``transformers.get_linear_schedule_with_warmup``), or None.
    :param encoder: the transformers encoder; None when every batch brings cached features.
    :param freeze: keep the encoder fixed (see module docstring).
    :param encoder_lr: learning rate of the encoder's parameter group when fine-tuning.
    :param penalty_coef: weight of the attention penalization in the loss.
    :param warmup_prop: share of the optimisation steps spent warming up.
    :param threshold: decision threshold on probabilities (may be re-tuned after training): one
        number, or one per label (multi-label, label order).
    :param tune_threshold: score each validation epoch at its own best threshold(s).
    :param threshold_mode: ``global`` (one threshold) or ``per_label`` when tuning (metrics.tune_threshold).
    """

    def __init__(
        self,
        head: nn.Module,
        task_type: str,
        num_labels: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        encoder: nn.Module | None = None,
        freeze: bool = True,
        encoder_lr: float = 2e-5,
        penalty_coef: float = 1.0,
        warmup_prop: float = 0.1,
        threshold: Threshold = 0.5,
        tune_threshold: bool = False,
        threshold_mode: str = "global",
    ) -> None:
        super().__init__()
        if not freeze and encoder is None:
            raise ValueError("fine-tuning (freeze=False) needs an encoder")
        self.save_hyperparameters(ignore=["head", "encoder", "optimizer", "scheduler"])
        self.head = head
        self.encoder = encoder
        self.freeze = freeze
        self.task_type = task_type
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.encoder_lr = encoder_lr
        self.penalty_coef = penalty_coef
        self.warmup_prop = warmup_prop
        self.threshold = threshold
        # With a tuned threshold, each epoch is scored at its own best validation threshold, so
        # model selection does not depend on a 0.5 cut that the final model will not use.
        self.tune_threshold = tune_threshold
        self.threshold_mode = threshold_mode
        self._val_outputs: list[tuple[Tensor, Tensor]] = []
        if freeze and encoder is not None:
            encoder.eval().requires_grad_(False)
            # The frozen encoder is dropped from checkpoints (on_save_checkpoint), so loading
            # the best checkpoint back must accept its absence.
            self.strict_loading = False
        elif encoder is not None:
            # from_pretrained returns models in eval mode and Lightning (>= 2.2) no longer calls
            # .train() at fit start: without this, fine-tuning would run with dropout off.
            encoder.train()
        metrics = build_metrics(task_type, num_labels)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_f1_best = MaxMetric()
        # Epoch-mean losses, logged once per epoch: a head on cached features takes a few
        # milliseconds per step, and a self.log call per step cost as much as the step itself.
        self.loss_means = nn.ModuleDict(
            {name: MeanMetric() for name in ("train_loss", "train_penalty", "val_loss", "test_loss")}
        )

    # -- forward ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> ClassifierModule:
        super().train(mode)
        if self.freeze and self.encoder is not None:
            self.encoder.eval()
        return self

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Token outputs (B, n, d): from the batch (feature cache) or from the encoder."""
        if "hidden" in batch:
            return batch["hidden"]
        if self.encoder is None:
            raise RuntimeError("batch has token ids but the module has no encoder")
        if self.freeze:
            with torch.no_grad():
                return self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    def forward(self, batch: dict[str, Tensor]) -> HeadOutput:
        return self.head(self.encode(batch), batch["attention_mask"])

    def model_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, HeadOutput]:
        output = self(batch)
        loss = task_loss(output.logits, batch["targets"], self.task_type) + self.penalty_coef * output.penalty
        return loss, predictions(output.logits.detach(), self.task_type, self.threshold), output

    # -- steps -----------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # The sanity-check batches must not leak into the first epoch's validation scores.
        self.val_metrics.reset()
        self.loss_means["val_loss"].reset()
        self.val_f1_best.reset()
        head = self.head
        if getattr(head, "standardize_inputs", False) and int(head.input_count) == 0:
            self.fit_head_statistics(self.trainer.train_dataloader)

    @torch.no_grad()
    def fit_head_statistics(self, loader, max_batches: int = 200) -> None:
        """Per-dimension mean/std of the training tokens for the head's input standardisation.

        Frozen features cost nothing to scan; a fine-tuned encoder is run (eval, no grad) on at
        most ``max_batches`` batches, since the statistics only need to be roughly right.
        """
        total = square = None
        count = 0
        was_training = self.training
        self.eval()
        for index, batch in enumerate(loader):
            if index == max_batches:
                break
            batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            tokens = self.encode(batch)[batch["attention_mask"].bool()].float()  # (N, d)
            total = tokens.sum(0) if total is None else total + tokens.sum(0)
            square = (tokens**2).sum(0) if square is None else square + (tokens**2).sum(0)
            count += tokens.size(0)
        self.train(was_training)
        if count:
            self.head.fit_input_statistics(total, square, count)

    def _log_epoch_mean(self, name: str, prog_bar: bool = False) -> None:
        mean = self.loss_means[name.replace("/", "_")]
        self.log(name, mean.compute(), prog_bar=prog_bar)
        mean.reset()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, preds, output = self.model_step(batch)
        size = batch["targets"].size(0)
        self.loss_means["train_loss"].update(loss.detach(), size)
        self.loss_means["train_penalty"].update(output.penalty.detach(), size)
        self.train_metrics.update(preds, batch["targets"].long())
        if self.trainer.loggers and (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, batch_size=size)
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_epoch_mean("train/loss", prog_bar=True)
        self._log_epoch_mean("train/penalty")
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, preds, output = self.model_step(batch)
        self.loss_means["val_loss"].update(loss, batch["targets"].size(0))
        if self.tune_threshold:
            self._val_outputs.append((probabilities(output.logits.detach(), self.task_type), batch["targets"]))
        else:
            self.val_metrics.update(preds, batch["targets"].long())

    def on_validation_epoch_end(self) -> None:
        if self.tune_threshold and self._val_outputs:
            probs = torch.cat([p for p, _ in self._val_outputs])
            targets = torch.cat([t for _, t in self._val_outputs])
            self._val_outputs.clear()
            threshold, _ = tune_threshold(probs.cpu(), targets.cpu(), self.task_type, mode=self.threshold_mode)
            self.val_metrics.update((probs >= threshold_tensor(threshold, probs)).long(), targets.long())
            # A per-label threshold is a list; its mean is the loggable summary.
            self.log("val/threshold", float(threshold_tensor(threshold, probs).mean()))
        self._log_epoch_mean("val/loss")
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_f1_best.update(values["val/f1"])
            self.log("val/f1_best", self.val_f1_best.compute())

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, preds, _ = self.model_step(batch)
        self.loss_means["test_loss"].update(loss, batch["targets"].size(0))
        self.test_metrics.update(preds, batch["targets"].long())

    def on_test_epoch_end(self) -> None:
        self._log_epoch_mean("test/loss")
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return {"probs": probabilities(self(batch).logits, self.task_type), "targets": batch["targets"]}

    # -- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        groups: list[dict[str, Any]] = [{"params": [p for p in self.head.parameters() if p.requires_grad]}]
        if not self.freeze and self.encoder is not None:
            groups.append({"params": [p for p in self.encoder.parameters() if p.requires_grad], "lr": self.encoder_lr})
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, num_warmup_steps=int(self.warmup_prop * total),
                                           num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A frozen encoder never changes: storing it in every checkpoint of every seed would
        # cost hundreds of MB each for nothing.
        if self.freeze:
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith("encoder.")]:
                del state[key]
