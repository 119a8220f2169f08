"""How much of the demo's worker-process speed-up is matrix work: steps per second of one process
with all cores' threads against as many single-threaded processes side by side (the rest of the
speed-up is single-threaded Python that a second process runs on the other core; docs/demo.md).

Two workloads, each timed both ways in the same run:

- ``gemm``: a 640 x 384 x 1536 float32 product (a distillation step's feed-forward shape: 16
  sequences of 40 tokens, hidden 384, FFN 1536);
- ``head``: one training step (forward, backward, AdamW) of the demo's self-attention classifier
  head on a batch of 32 texts of 64 tokens, half of them padding (``modeling/heads.py``).

    python benchmarks/workers.py                 # all cores, 4 s per measurement
    python benchmarks/workers.py --cores 2 --seconds 8

The last line is the ratio for the head step: work per second of the worker processes over that
of one multi-threaded process (> 1: the pool does more work in the same time).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _gemm_step():
    import torch

    a, w = torch.randn(640, 384), torch.randn(1536, 384)
    return lambda: a @ w.T


def _head_step():
    import torch

    from domain_distil.modeling.heads import SelfAttentionHead

    torch.manual_seed(0)
    head = SelfAttentionHead(384, 10)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    hidden, mask = torch.randn(32, 64, 384), torch.ones(32, 64, dtype=torch.long)
    mask[:, 32:] = 0
    targets = torch.randint(0, 2, (32, 10)).float()

    def step() -> None:
        output = head(hidden, mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, targets) + output.penalty
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


WORKLOADS = {"gemm": _gemm_step, "head": _head_step}


def steps_per_second(workload: str, threads: int, seconds: float) -> float:
    import torch

    torch.set_num_threads(threads)
    step = WORKLOADS[workload]()
    for _ in range(5):
        step()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - started)


def _worker(args: tuple[str, float]) -> float:
    return steps_per_second(args[0], 1, args[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    context = mp.get_context("spawn")
    ratio = 0.0
    for workload in WORKLOADS:
        with context.Pool(1) as pool:  # a fresh process, like a worker, for the threaded run too
            threaded = pool.apply(steps_per_second, (workload, args.cores, args.seconds))
        with context.Pool(args.cores) as pool:
            single = pool.map(_worker, [(workload, args.seconds)] * args.cores)
        ratio = sum(single) / threaded
        print(f"{workload}: 1 process x {args.cores} threads {threaded:.1f} steps/s | "
              f"{args.cores} processes x 1 thread {sum(single):.1f} steps/s in all -> ratio {ratio:.2f}")
    print(f"workers/threads ratio (head step): {ratio:.2f}")


if __name__ == "__main__":
    main()
