"""TaskDataModule: one labeled task in one language, as cached features or as token ids.

Splits follow the paper's Table 2 (``classification.taskfile.split_language``): train on natural +
translated rows, validate and test on natural rows only. Two input modes:

- ``features`` given (frozen encoder with the cache): each batch carries the encoder's token
  outputs ``hidden`` (B, n, d) and ``attention_mask``; the encoder never runs during training.
- otherwise (fine-tuning, or a frozen encoder without the cache): each batch carries
  ``input_ids`` and ``attention_mask``, tokenised once in ``setup``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from domain_distil.classification.features import FeatureStore, pad_batch, tokenize_texts
from domain_distil.classification.taskfile import TaskSpec, TaskSplits, load_task

FeatureProvider = Callable[[list[str], str], FeatureStore]


class _FeatureDataset(Dataset):
    def __init__(self, store: FeatureStore, targets: Tensor) -> None:
        if len(store) != len(targets):
            raise ValueError(f"feature cache has {len(store)} rows for {len(targets)} examples")
        self.store, self.targets = store, targets
        # Converted to float32 once (a task split is a few MB), so a row is a view, not a copy per step.
        self.hidden = store.hidden.float()
        self.offsets = store.offsets.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.hidden[self.offsets[index] : self.offsets[index + 1]], self.targets[index]


class _TokenDataset(Dataset):
    def __init__(self, ids: list[list[int]], targets: Tensor) -> None:
        self.ids, self.targets = ids, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[list[int], Tensor]:
        return self.ids[index], self.targets[index]


def collate_features(batch: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Right-pad the rows' token outputs with zeros into (B, longest, d), with their attention mask."""
    rows = [states for states, _ in batch]
    lengths = torch.tensor([states.size(0) for states in rows])
    hidden = pad_sequence(rows, batch_first=True).float()
    mask = (torch.arange(hidden.size(1)) < lengths.unsqueeze(1)).long()
    return {"hidden": hidden, "attention_mask": mask, "targets": torch.stack([t for _, t in batch])}


class _CollateTokens:
    """Picklable (for worker processes) right-padding collate for token ids."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[tuple[list[int], Tensor]]) -> dict[str, Tensor]:
        input_ids, mask = pad_batch([ids for ids, _ in batch], self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask, "targets": torch.stack([t for _, t in batch])}


class TaskDataModule(L.LightningDataModule):
    """Data for one (task, language) job.

    :param splits: validated, per-language splits (``classification.taskfile.load_task``).
    :param batch_size: examples per batch for every split.
    :param tokenizer: needed unless ``features`` serves every split.
    :param max_length: truncation length in tokens, special tokens included.
    :param features: ``(texts, split name) -> FeatureStore`` (e.g. ``FeatureCache.get``) for the
        frozen, cached mode; ``None`` for token ids.
    """

    def __init__(
        self,
        splits: TaskSplits,
        batch_size: int,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int = 128,
        features: FeatureProvider | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if features is None and tokenizer is None:
            raise ValueError("TaskDataModule needs a tokenizer when no feature cache is given")
        self.splits = splits
        self.batch_size = batch_size
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.features = features
        self.num_workers = num_workers
        self.datasets: dict[str, Dataset] = {}

    @classmethod
    def from_files(
        cls,
        spec: TaskSpec,
        lang: str,
        files: Sequence[str | Path] | None = None,
        directory: str | Path | None = None,
        **kwargs: Any,
    ) -> TaskDataModule:
        """Read and validate the task files (errors name file and line) and keep ``lang``'s splits."""
        return cls(load_task(spec, lang, files, directory), **kwargs)

    def setup(self, stage: str | None = None) -> None:
        # Every split is built on the first call (fit needs train+val, test needs test; building
        # them together lets the feature cache encode everything in one pass).
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _build(self, split: str) -> Dataset:
        texts, targets = self.splits.texts(split), self.splits.targets(split)
        if self.features is not None:
            return _FeatureDataset(self.features(texts, split), targets)
        assert self.tokenizer is not None
        return _TokenDataset(tokenize_texts(self.tokenizer, texts, self.max_length), targets)

    def _collate(self) -> Callable[[list[Any]], dict[str, Tensor]]:
        if self.features is not None:
            return collate_features
        pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer and self.tokenizer.pad_token_id is not None else 0
        )
        return _CollateTokens(pad_id)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=self._collate(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Every loader here yields a flat dict of tensors: moving them directly skips Lightning's
        # generic collection walk, a noticeable share of a step on cached features.
        if isinstance(batch, dict) and all(isinstance(value, Tensor) for value in batch.values()):
            return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Validation rows, in order: used to tune the decision threshold."""
        return self._loader("val", shuffle=False)
