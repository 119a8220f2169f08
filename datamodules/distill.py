"""DistillDataModule: token shards -> right-padded, length-grouped batches, resumable mid-epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from datamodules.samplers import LengthGroupedBatchSampler
from domain_distil.corpus.dataset import TokenSequenceDataset


def pad_batch(sequences: list[np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence. The attention mask is derived from ``lengths`` later."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    token_ids = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        token_ids[row, : len(seq)] = torch.from_numpy(seq.astype(np.int64))
    # n_tokens (real tokens) and n_positions (the padded batch's size, which the models compute on)
    # stay Python ints (not moved to the device), so throughput and padding need no device sync.
    return {"input_ids": token_ids, "lengths": lengths, "n_tokens": int(lengths.sum()),
            "n_positions": token_ids.numel()}


class _Collate:
    """A picklable collate function (DataLoader workers need to pickle it)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, sequences: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return pad_batch(sequences, self.pad_id)


class DistillDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus_dir: str | Path,
        pad_token_id: int,
        batch_size: int = 5,
        seed: int = 56,
        group_by_size: bool = True,
        reshuffle_each_epoch: bool = True,
        max_length: int = 512,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.corpus_dir = Path(corpus_dir)
        self.pad_token_id = pad_token_id
        self.batch_size, self.seed = batch_size, seed
        self.group_by_size, self.reshuffle_each_epoch = group_by_size, reshuffle_each_epoch
        self.max_length, self.num_workers = max_length, num_workers
        self.dataset: TokenSequenceDataset | None = None
        self.batch_sampler: LengthGroupedBatchSampler | None = None
        # Mid-epoch resume: how many batches of which epoch the model has already trained on.
        self._epoch_seen, self._batches_seen = 0, 0
        self._pending_skip: tuple[int, int] | None = None

    def setup(self, stage: str) -> None:
        if self.dataset is None:
            self.dataset = TokenSequenceDataset(self.corpus_dir)

    def _rank_and_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def batches_per_epoch(self) -> int:
        """``len(train_dataloader())`` on every rank, computed without building the loader (see
        ``DistillationModule.total_optimizer_steps`` for why that matters on resume)."""
        assert self.dataset is not None, "call setup() first"
        return LengthGroupedBatchSampler.batches_per_rank(
            len(self.dataset.lengths), self.batch_size, self._rank_and_world()[1]
        )

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "call setup() first"
        rank, world = self._rank_and_world()
        self.batch_sampler = LengthGroupedBatchSampler(
            self.dataset.lengths,
            self.batch_size,
            self.seed,
            rank=rank,
            world_size=world,
            group_by_size=self.group_by_size,
            reshuffle_each_epoch=self.reshuffle_each_epoch,
            max_length=self.max_length,
        )
        return DataLoader(
            self.dataset,
            batch_sampler=_ResumingBatchSampler(self),
            collate_fn=_Collate(self.pad_token_id),
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            # Its own generator: otherwise every new iterator (one per epoch) draws its worker base
            # seed from the global torch RNG, the one dropout uses, and a run resumed at an epoch
            # boundary would see a different dropout stream from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    # Called by the trainer for the batch about to be trained on (not for prefetched ones), so
    # the count is exactly "batches consumed" whatever the loader prefetches.
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            self._batches_seen += 1
        return batch

    # Every rank's position is (epoch, batches_seen, world_size): a rank's batches are a pure function
    # of (seed, epoch, rank, world_size) and all ranks have the same number of batches and step
    # together, so rank 0's count, written by Lightning, is every rank's count.
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch_seen,
            "batches_seen": self._batches_seen,
            "world_size": self._rank_and_world()[1],
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = {k: state_dict.get(k) for k in ("world_size", "batch_size")}
        now = {"world_size": self._rank_and_world()[1], "batch_size": self.batch_size}
        changed = {k: (saved[k], now[k]) for k in saved if saved[k] is not None and saved[k] != now[k]}
        if changed:
            rank_zero_warn(
                "Resuming with a different data split than the checkpoint's ("
                + ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
                + f"): the next {state_dict['batches_seen']} batches of epoch {state_dict['epoch']} are skipped, but "
                "they are not the batches the interrupted run trained on, so the resume is not exact."
            )
        self._pending_skip = (int(state_dict["epoch"]), int(state_dict["batches_seen"]))


class _ResumingBatchSampler:
    """Delegates to the datamodule's sampler; applies a pending resume skip on the right epoch.

    The epoch is read from the trainer when the loader's iterator is created: Lightning creates
    the first iterator (and prefetches from it) before it calls ``set_epoch``, so a sampler that
    waited for ``set_epoch`` would replay epoch 0 after a mid-epoch resume. On resume that first
    iterator is built in ``FitLoop.setup_data``, after the loop state is restored (which is why
    nothing may build it earlier, e.g. ``trainer.estimated_stepping_batches`` in
    ``configure_optimizers``).
    """

    def __init__(self, datamodule: DistillDataModule) -> None:
        self.dm = datamodule

    def __len__(self) -> int:
        return len(self.dm.batch_sampler)

    def __iter__(self):
        dm, sampler = self.dm, self.dm.batch_sampler
        epoch = dm.trainer.current_epoch if dm.trainer is not None else sampler.epoch
        skip = 0
        if dm._pending_skip is not None and dm._pending_skip[0] == epoch:
            skip = dm._pending_skip[1]
            if skip >= len(sampler):
                # Saved on the epoch's last batch. Lightning moves on to the next epoch only after
                # building this iterator (FitLoop.reset) and then trains on it without building
                # another, so it must already be the next epoch's, from its first batch.
                epoch, skip = epoch + 1, 0
        dm._pending_skip = None
        sampler.set_epoch(epoch)
        sampler.skip_batches = skip
        dm._epoch_seen, dm._batches_seen = epoch, skip
        return iter(sampler)
