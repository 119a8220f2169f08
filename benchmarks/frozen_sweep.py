"""Cost of a frozen-encoder seed sweep with and without the feature cache.

Runs the real ``task=classify`` job (``tasks.classify.run`` on the composed Hydra config) for N
seeds twice, in one process, on the same data and the same encoder:

- cached: ``classify.feature_cache=true``: the first seed encodes train/val/test once, the other
  seeds read the token outputs from ``${paths.cache_dir}/features`` and never load the encoder;
- uncached: ``classify.feature_cache=false``: the frozen encoder runs on every batch of every epoch
  of every seed (what a plain frozen-encoder training loop does).

The encoder is a randomly initialised 6-layer DistilBERT of DistilmBERT's width (768 hidden,
12 heads, 3072 FFN), built from a config (no download) and saved as an exported encoder folder so
the job loads it through ``encoder=path`` like any student. Its vocabulary is the tiny test
WordPiece one: embedding size does not change the cost of a forward pass.

    python benchmarks/frozen_sweep.py                       # 10 seeds, CPU-sized data
    python benchmarks/frozen_sweep.py --train 2000 --epochs 5 --threads 8

The last line is the ratio cached / uncached wall time (goal: <= 0.5).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from transformers import DistilBertModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tiny test models
from tiny_models import build_wide_encoder  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
REQUEST = "order refund cancel delivery password payment track package account change update help need".split()
CHAT = "hello hi thanks thank you yes no the a it is my please what how when where".split()


def write_task(path: Path, sizes: dict[str, int], seed: int = 0) -> None:
    """Balanced intentful / not-intentful messages of 5-30 words (chat-message lengths)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for split, n in sizes.items():
            for i in range(n):
                intentful = i % 2 == 0
                words = [rng.choice(REQUEST if intentful and rng.random() < 0.4 else CHAT)
                         for _ in range(rng.randint(5, 30))]
                row = {"text": " ".join(words), "label": "intentful" if intentful else "not_intentful",
                       "lang": "eng", "split": split, "source": "natural"}
                handle.write(json.dumps(row) + "\n")


def make_cfg(root: Path, encoder: Path, args: argparse.Namespace, seed: int, cached: bool) -> DictConfig:
    overrides = [
        "task=classify", "encoder=path", f"encoder.name_or_path={encoder}", f"cls_task.dir={root / 'task'}",
        "logger=none", f"seed={seed}", f"classify.feature_cache={str(cached).lower()}",
        f"classify.trainer.max_epochs={args.epochs}", f"classify.batch_size={args.batch_size}",
        f"cls_task.max_length={args.max_length}", "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        run_dir = root / ("cached" if cached else "uncached") / f"seed={seed}"
        cfg.paths.update(root_dir=str(root), data_dir=str(root / "data"), log_dir=str(root / "logs"),
                         cache_dir=str(root / "cache"), output_dir=str(run_dir))
    return cfg


def sweep(root: Path, encoder: Path, args: argparse.Namespace, cached: bool) -> tuple[float, list[float], list[float]]:
    from domain_distil.tasks.classify import run

    seconds, f1s = [], []
    started = time.perf_counter()
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        record = run(make_cfg(root, encoder, args, seed, cached))
        seconds.append(time.perf_counter() - t0)
        f1s.append(record["test"]["f1"])
    return time.perf_counter() - started, seconds, f1s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--train", type=int, default=128)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.disable(logging.INFO)  # Lightning's per-job banners would bury the numbers
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="frozen_sweep_") as tmp:
        root = Path(tmp)
        encoder = build_wide_encoder(root / "encoder", args.layers)
        write_task(root / "task" / "cc.jsonl", {"train": args.train, "val": args.val, "test": args.test})
        params = sum(p.numel() for p in DistilBertModel.from_pretrained(encoder).transformer.parameters())
        print(f"encoder: random DistilBERT, {args.layers} layers x 768 (transformer {params / 1e6:.1f}M params); "
              f"data: {args.train}/{args.val}/{args.test} messages, max_length {args.max_length}; "
              f"{args.seeds} seeds x {args.epochs} epochs; {torch.get_num_threads()} thread(s)")
        cached_total, cached_each, cached_f1 = sweep(root, encoder, args, cached=True)
        print(f"cached:   total {cached_total:7.1f} s; first seed {cached_each[0]:.1f} s (encodes), "
              f"later seeds median {statistics.median(cached_each[1:] or cached_each):.2f} s")
        uncached_total, uncached_each, uncached_f1 = sweep(root, encoder, args, cached=False)
        print(f"uncached: total {uncached_total:7.1f} s; per seed median {statistics.median(uncached_each):.1f} s")
        print(f"test F1 per seed, cached:   {[round(f, 3) for f in cached_f1]}")
        print(f"test F1 per seed, uncached: {[round(f, 3) for f in uncached_f1]}")
        print(f"ratio cached/uncached: {cached_total / uncached_total:.3f}")


if __name__ == "__main__":
    main()
