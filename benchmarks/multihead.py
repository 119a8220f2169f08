"""Throughput of one shared encoder with many heads vs. one encoder per head (the paper's Figure 1).

Three measurements in one run, on the same texts, through the real serving path (a bundle built
with ``serving.bundle_build.build_bundle``, loaded with ``serving.bundle_load.load_bundle``, run by ``serving.predictor``):

- 1 head on one encoder: the predictor filtered to one head;
- 10 heads on one encoder: every text encoded once, the 10 heads run on the shared token outputs;
- 10 separate encoder + head pipelines: 10 single-head predictors, each encoding every text itself.
  They share one copy of the encoder weights in memory (10 copies of a 6-layer encoder would only
  add RAM), but each runs its own tokenisation and encoder pass, so the compute is that of 10
  separate services.

The encoder is a randomly initialised 6-layer DistilBERT of DistilmBERT's width (768 hidden, 12
heads, 3072 FFN), built from a config (no download); its vocabulary is the tiny test WordPiece one
(embedding size does not change the cost of a forward pass). Heads have the default
``conf/head/self_attention.yaml`` size (~578k parameters each on 768-dim inputs).

    python benchmarks/multihead.py                      # 64 texts, 1 thread, median of 3
    python benchmarks/multihead.py --texts 256 --threads 8 --repeats 5

Throughput is texts per second, the median of ``--repeats`` timed rounds after one warm-up round;
the three workloads alternate within each round, so load from other processes on a shared machine
hits them alike. Absolute numbers are still noisy there; the ratios are steadier.
The last line is the ratio (10 heads on one encoder) / (1 head); goal >= 0.8. The line before it is
(10 heads on one encoder) / (10 separate pipelines); goal >= 5.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from domain_distil.common.hashing import hash_dir
from domain_distil.modeling.heads import SelfAttentionHead
from domain_distil.serving.bundle_build import build_bundle
from domain_distil.serving.bundle_format import HeadSpec
from domain_distil.serving.bundle_load import load_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tiny test models
from tiny_models import build_wide_encoder  # noqa: E402

from domain_distil.serving.predictor import Predictor

WORDS = ("order refund cancel delivery password payment track package account change update help need "
         "hello hi thanks thank you yes no the a it is my please what how when where python java code").split()
HEAD = {"_target_": "domain_distil.modeling.heads.SelfAttentionHead", "attention_dim": 350, "num_hops": 4, "hidden_dim": 100,
        "dropout": 0.5}


def random_heads(encoder_dir: Path, count: int) -> list[HeadSpec]:
    """``count`` binary heads (random weights: the cost does not depend on training)."""
    digest = hash_dir(encoder_dir)
    heads = []
    for i in range(count):
        torch.manual_seed(i)
        module = SelfAttentionHead(768, 2, **{k: v for k, v in HEAD.items() if not k.startswith("_")})
        heads.append(HeadSpec(task=f"task{i:02d}", lang="eng", task_type="binary", labels=["yes", "no"],
                              positive_label="yes", threshold=0.5, max_length=128, head_config=HEAD, input_dim=768,
                              num_classes=2, encoder_hash=digest, state_dict=module.state_dict(),
                              source={"freeze": True, "benchmark": True}))
    return heads


def texts_of(n: int, seed: int = 0) -> list[str]:
    """Chat-message-like texts of 5-40 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


def interleaved_throughput(works: dict[str, Callable[[], None]], n_texts: int, repeats: int) -> dict[str, float]:
    """Texts per second of each workload, median over ``repeats`` rounds after one warm-up round.

    The workloads run in turn within each round (A, B, C, A, B, C, ...), so a neighbour's load on
    the shared machine slows all of them alike instead of whichever happens to run at that moment."""
    for work in works.values():
        work()  # warm-up: first-call allocations, lazy initialisation
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {name: n_texts / statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        encoder_dir = build_wide_encoder(Path(tmp) / "encoder", args.layers)
        bundle_dir = build_bundle(encoder_dir, random_heads(encoder_dir, args.heads), Path(tmp) / "bundle",
                                  copy_encoder=False)
        bundle = load_bundle(bundle_dir)
        texts = texts_of(args.texts)
        shared = Predictor(bundle, batch_size=args.batch_size)
        first = shared.select()[0]
        separate = [Predictor(bundle, batch_size=args.batch_size) for _ in range(args.heads)]
        keys = shared.select()
        print(f"encoder: {args.layers}-layer DistilBERT, 768 hidden; {args.heads} self-attention heads of "
              f"{sum(p.numel() for p in shared.heads[first].parameters()):,} parameters; {args.texts} texts of "
              f"5-40 words; batch {args.batch_size}; {args.threads} thread(s); median of {args.repeats}")

        def pipelines() -> None:
            for predictor, key in zip(separate, keys, strict=True):
                predictor.predict_rows(texts, [[key]] * len(texts))

        speed = interleaved_throughput({
            "one": lambda: shared.predict_rows(texts, [[first]] * len(texts)),
            "many": lambda: shared.predict(texts),
            "apart": pipelines,
        }, len(texts), args.repeats)
        one, many, apart = speed["one"], speed["many"], speed["apart"]
        print(f"1 head on one encoder:                 {one:8.2f} texts/s")
        print(f"{args.heads} heads on one encoder:               {many:8.2f} texts/s")
        print(f"{args.heads} separate encoder + head pipelines: {apart:8.2f} texts/s")
        print(f"ratio ({args.heads} heads on one encoder) / ({args.heads} separate pipelines): {many / apart:.2f} (goal >= 5)")
        print(f"ratio ({args.heads} heads on one encoder) / (1 head): {many / one:.3f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
