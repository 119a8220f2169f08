"""Cost of the corpus-fit report and of task-aware selection on a large pool, against tokenising it.

A pool of ``--pool-mb`` MB (English; the demo generator's in-domain and general text, half each,
generated once at ``--unique-mb`` MB and repeated up to the size: tokenising cost does not depend on
whether lines repeat) is

1. tokenised with the demo teacher's tokenizer (me5_small), ids discarded: the baseline;
2. profiled by the corpus-fit report (``analysis.corpus_fit_report.fit_report``) against the
   ``td_tags`` training texts: token statistics over the whole pool plus teacher embeddings of a
   512-document sample;
3. cut to 10% of its tokens by ``stages.select_corpus`` with the token-statistics score (fresh cache);
4. cut the same way by the ``static`` score (kNN over mean input-token vectors of the teacher).

Each step runs in its own spawned process, so its peak memory (``ru_maxrss``) is its own.
Selection with the encoder (``method=embedding``) embeds every pool document: its rate is measured on a ``--rate-documents`` slice
and extrapolated, and the brute-force kNN step is timed at 100k documents (is an ANN index needed?).

    python benchmarks/corpus_fit.py                  # 100 MB pool (~10-15 min on 2 busy cores)
    python benchmarks/corpus_fit.py --pool-mb 10     # quick look

Targets: report <= 2x tokenisation, selection <= 5x. The last line is the selection ratio, the
slower of ``tokens`` and ``static`` (``embedding`` is extrapolated above it, hours at 100 MB).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("DOMAIN_DISTIL_CACHE", "cache")).resolve()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _tokenizer():
    from transformers import AutoTokenizer

    from domain_distil.demo.teachers.me5 import prepare_me5_small

    return AutoTokenizer.from_pretrained(prepare_me5_small(CACHE))


def _task_texts(data: Path) -> list[str]:
    import json

    rows = (json.loads(line) for line in (data / "tasks" / "td_tags.jsonl").open(encoding="utf-8"))
    return [r["text"] for r in rows if r["lang"] == "eng" and r["split"] == "train"]


def step_tokenise(pool: Path, data: Path, queue: mp.Queue) -> None:
    from domain_distil.analysis.corpus_fit import token_ids
    from domain_distil.corpus.reader import iter_documents

    tokenizer = _tokenizer()
    started = time.perf_counter()
    tokens = 0
    for ids in token_ids(tokenizer, (text for text, _ in iter_documents(pool / "eng.txt"))):
        tokens += sum(len(row) for row in ids)
    queue.put({"seconds": time.perf_counter() - started, "peak_mb": _peak_mb(), "tokens": tokens})


def step_report(pool: Path, data: Path, queue: mp.Queue) -> None:
    from domain_distil.analysis import corpus_fit_report
    from domain_distil.analysis.corpus_fit_report import Candidate, FitSettings, fit_report
    from domain_distil.demo.teachers.me5 import prepare_me5_small
    from domain_distil.encoders import load_encoder

    tokenizer = _tokenizer()
    encoder = load_encoder(prepare_me5_small(CACHE))
    texts = {"td_tags": {"eng": _task_texts(data)}}
    # the encoder's share of the report, timed around the one function that runs it (the split says
    # which part a larger pool makes cheaper relative to tokenising: the encoder sample is fixed)
    embedding_seconds = 0.0
    embed_by_length = corpus_fit_report.embed_by_length

    def timed_embed(*args, **kwargs):
        nonlocal embedding_seconds
        started = time.perf_counter()
        try:
            return embed_by_length(*args, **kwargs)
        finally:
            embedding_seconds += time.perf_counter() - started

    corpus_fit_report.embed_by_length = timed_embed
    started = time.perf_counter()
    rows = fit_report([Candidate("pool", {"eng": [pool / "eng.txt"]})], texts, tokenizer, FitSettings(), encoder)
    queue.put({"seconds": time.perf_counter() - started, "peak_mb": _peak_mb(), "embedding_seconds": embedding_seconds,
               "embedded": int(rows[0].figures["embedded_documents"]),
               "embedded_task": min(FitSettings().sample_task_texts, len(texts["td_tags"]["eng"])), "coverage_mass": rows[0].figures["coverage_mass"]})


def step_select(pool: Path, data: Path, queue: mp.Queue, pool_tokens: int, method: str) -> None:
    from domain_distil.demo.teachers.me5 import prepare_me5_small
    from domain_distil.encoders import load_encoder
    from domain_distil.stages.select_corpus import (
        StaticEmbeddingScorer,
        TokenScorer,
        read_selection,
        select_corpus,
    )

    tokenizer = _tokenizer()
    texts = {"eng": _task_texts(data)}
    # the budget (10% of the pool) comes from the tokenise step's count: a user knows their budget,
    # and counting again here would tokenise the pool a second time outside the clock
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()  # loading the teacher's table is part of the static selection's cost
        if method == "static":
            table = load_encoder(prepare_me5_small(CACHE))[0].get_input_embeddings().weight
            scorer = StaticEmbeddingScorer(table, tokenizer, "me5_small")
        else:
            scorer = TokenScorer(tokenizer)
        folder = select_corpus({"eng": [pool / "eng.txt"]}, texts, pool_tokens // 10, scorer, tokenizer, cache)
        seconds = time.perf_counter() - started
        stats = read_selection(folder)["languages"]["eng"]
    queue.put({"seconds": seconds, "peak_mb": _peak_mb(), "tokens_selected": stats["tokens_selected"]})


def step_embedding_rate(pool: Path, data: Path, queue: mp.Queue, documents: int) -> None:
    import itertools

    import torch

    from domain_distil.analysis.corpus_fit import nearest_similarities
    from domain_distil.corpus.reader import iter_documents
    from domain_distil.demo.teachers.me5 import prepare_me5_small
    from domain_distil.encoders import embed, load_encoder

    model, tokenizer = load_encoder(prepare_me5_small(CACHE))
    documents = [t for t, _ in itertools.islice(iter_documents(pool / "eng.txt"), documents)]
    started = time.perf_counter()
    embed(model, tokenizer, documents, 128, 64)
    rate = len(documents) / (time.perf_counter() - started)
    generator = torch.Generator().manual_seed(0)
    keys, queries = torch.randn(100_000, 384, generator=generator), torch.randn(1000, 384, generator=generator)
    started = time.perf_counter()
    nearest_similarities(keys, queries, 5)
    queue.put({"docs_per_s": rate, "knn_100k_seconds": time.perf_counter() - started, "peak_mb": _peak_mb()})


def run_step(step: Callable[..., None], pool: Path, data: Path, *extra: object) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=step, args=(pool, data, queue, *extra))
    process.start()
    result = queue.get()
    process.join()
    return result


def build_pool(root: Path, pool_mb: float, unique_mb: float) -> tuple[Path, Path]:
    from domain_distil.demo.data.generator import generate_demo_data

    data = root / f"demo_{unique_mb:g}"
    generate_demo_data(data, 0, languages=["eng"], corpus_mb_per_lang=unique_mb / 2, general_mb_per_lang=unique_mb / 2,
                       n_train=1000, n_val=10, n_test=10)
    pool = root / f"pool_{pool_mb:g}"
    target = pool / "eng.txt"
    if not target.is_file():
        pool.mkdir(parents=True, exist_ok=True)
        unique = (data / "in_domain" / "eng.txt").read_bytes() + (data / "general" / "eng.txt").read_bytes()
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            written = 0
            while written < pool_mb * 1e6:
                handle.write(unique)
                written += len(unique)
        tmp.replace(target)
    return pool, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-mb", type=float, default=100.0)
    parser.add_argument("--unique-mb", type=float, default=4.0, help="distinct text generated, then repeated")
    parser.add_argument("--work", default=str(CACHE / "benchmarks" / "corpus_fit"))
    parser.add_argument("--rate-documents", type=int, default=2000,
                        help="pool documents embedded to measure embedding selection's rate")
    args = parser.parse_args()
    pool, data = build_pool(Path(args.work), args.pool_mb, args.unique_mb)
    size_mb = (pool / "eng.txt").stat().st_size / 1e6
    print(f"pool: {size_mb:.1f} MB at {pool}", flush=True)
    tokenise = run_step(step_tokenise, pool, data)
    print(f"tokenise:  {tokenise['seconds']:7.1f} s  peak {tokenise['peak_mb']:6.0f} MB  "
          f"({tokenise['tokens'] / 1e6:.1f} M tokens, {size_mb / tokenise['seconds']:.2f} MB/s)", flush=True)
    report = run_step(step_report, pool, data)
    print(f"report:    {report['seconds']:7.1f} s  peak {report['peak_mb']:6.0f} MB  "
          f"(coverage_mass {report['coverage_mass']:.3f}; of which {report['embedding_seconds']:.1f} s embedding "
          f"{report['embedded']} sampled documents + {report['embedded_task']} task texts)", flush=True)
    select = {}
    for method in ("tokens", "static"):
        select[method] = run_step(step_select, pool, data, tokenise["tokens"], method)
        print(f"select:    {select[method]['seconds']:7.1f} s  peak {select[method]['peak_mb']:6.0f} MB  "
              f"({select[method]['tokens_selected'] / 1e6:.2f} M tokens kept, method={method})", flush=True)
    rate = run_step(step_embedding_rate, pool, data, args.rate_documents)
    documents = sum(1 for _ in open(pool / "eng.txt", "rb"))
    print(f"embedding selection: {rate['docs_per_s']:.0f} documents/s -> ~{documents / rate['docs_per_s'] / 60:.0f} min "
          f"for this pool's {documents} documents; brute-force kNN of 100k x 1k vectors: "
          f"{rate['knn_100k_seconds']:.2f} s", flush=True)
    print(f"report / tokenisation ratio: {report['seconds'] / tokenise['seconds']:.2f} (target <= 2)")
    ratios = {method: step["seconds"] / tokenise["seconds"] for method, step in select.items()}
    print(f"selection / tokenisation ratio: {max(ratios.values()):.2f} (the slower of "
          + ", ".join(f"{method} {ratio:.2f}" for method, ratio in ratios.items()) + "; target <= 5)")


if __name__ == "__main__":
    main()
