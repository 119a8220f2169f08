"""A child process for tests/test_scale.py: builds a budget subset, a feature split and a student
export into a shared cache, in step with a twin process. Kept apart from the test module so the
spawned children import only what they use (no Lightning, no Hydra)."""

from __future__ import annotations

import os
import time
from pathlib import Path

SUBSET_LINES = [f"document {i} " + "word " * (i % 23) for i in range(400)]
FEATURE_TEXTS = ["cancel my order please", "hello", "where is my package and my refund", "thanks a lot"]


def build_all_caches(teacher_dir: str, corpus_dir: str, cache_dir: str, log_path: str, barrier) -> None:
    """One builder process: the same subset, feature split and student export as its twin.

    Every real build allocates exactly one private temp folder, so ``private_temp_path`` is wrapped
    to log each build and hold it for a moment; the twin then arrives while the build is running
    and must wait for it instead of building a second copy.
    """
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    # The test process runs one thread (conftest.py); a spawned child would take every core, and
    # on CPUs whose kernels split the reduction by thread count the features differ in the last bit.
    torch.set_num_threads(1)

    import domain_distil.common.locking as locking
    from domain_distil.classification.features import FeatureCache
    from domain_distil.corpus.reader import discover_files
    from domain_distil.corpus.subset import budget_subset
    from domain_distil.modeling.export import export_model

    original = locking.private_temp_path

    def logged_temp_path(target):
        with open(log_path, "a") as handle:
            handle.write(f"{Path(target).parent.name} {os.getpid()}\n")
        time.sleep(0.5)
        return original(target)

    cache = Path(cache_dir)
    files = discover_files(corpus_dir)
    model = AutoModelForMaskedLM.from_pretrained(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    features = FeatureCache(cache / "features", "enc-tiny", max_length=16,
                            load_encoder=lambda: (AutoModel.from_pretrained(teacher_dir), tokenizer),
                            dtype="float32")
    locking.private_temp_path = logged_temp_path
    try:  # restored afterwards: the test also calls this in its own process, for a reference build
        barrier.wait()
        budget_subset(files, {"eng": 0.5 * sum(len(x) + 1 for x in SUBSET_LINES) / 1e9}, seed=3, cache_dir=cache)
        barrier.wait()
        features.get(FEATURE_TEXTS, "train")
        barrier.wait()
        export_model(model, tokenizer, cache / "students" / "abc", {"kind": "student", "writer": os.getpid()})
    finally:
        locking.private_temp_path = original
