"""Random access to a built corpus through memory maps (constant memory, any corpus size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from domain_distil.common.io import read_json
from domain_distil.corpus.shards import META, TOKEN_DTYPE


class TokenSequenceDataset(Dataset):
    """``dataset[i]`` is a 1-D int32 array of token ids ([CLS] ... [SEP])."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = read_json(self.root / META)
        self.languages = sorted(self.meta["languages"])
        indexes, self._shard_paths = [], []
        for lang_id, lang in enumerate(self.languages):
            index = np.load(self.root / lang / "index.npy")
            shard_base = len(self._shard_paths)
            n_shards = int(index[:, 0].max()) + 1 if len(index) else 0
            self._shard_paths += [self.root / lang / f"shard-{k:05d}.bin" for k in range(n_shards)]
            indexes.append(np.column_stack([index[:, 0] + shard_base, index[:, 1], index[:, 2],
                                            np.full(len(index), lang_id)]))
        self.index = np.concatenate(indexes) if indexes else np.zeros((0, 4), dtype=np.int64)
        self.lengths = self.index[:, 2].astype(np.int64)
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, k: int) -> np.memmap:
        # Opened lazily so each DataLoader worker maps its own view (memmaps don't pickle as maps).
        if k not in self._maps:
            self._maps[k] = np.memmap(self._shard_paths[k], dtype=TOKEN_DTYPE, mode="r")
        return self._maps[k]

    def __getitem__(self, i: int) -> np.ndarray:
        shard, offset, length, _ = self.index[i]
        return np.asarray(self._shard(int(shard))[offset : offset + length])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def token_counts(self) -> np.ndarray:
        return np.load(self.root / "token_counts.npy")
