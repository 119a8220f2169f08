"""A bag-of-words logistic-regression baseline, to check that the demo tasks are not at ceiling
(docs/demo-data.md). Numpy only.

    python benchmarks/demo_data_baseline.py <data_dir>    # prints the F1 per task and language
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

from domain_distil.common.io import MANIFEST

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def features(text: str, lang: str) -> set[str]:
    text = text.lower()
    if lang == "jap":
        chars = [c for c in text if not c.isspace()]
        return {a + b for a, b in zip(chars, chars[1:])} | set(_WORD.findall(text))
    return set(_WORD.findall(text))


def _matrix(texts: list[set[str]], vocab: dict[str, int]) -> sparse.csr_matrix:
    """Sparse binary features plus a constant bias column (the last one)."""
    rows, cols = [], []
    for i, feats in enumerate(texts):
        ids = sorted({vocab[f] for f in feats if f in vocab} | {len(vocab)})
        rows += [i] * len(ids)
        cols += ids
    data = np.ones(len(rows))
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), len(vocab) + 1))


def fit_logreg(x: sparse.csr_matrix, y: np.ndarray, l2: float = 1e-3, steps: int = 1000, lr: float = 1.0) -> np.ndarray:
    """Weights [features, labels] for targets y [rows, labels] in {0, 1} (gradient descent)."""
    w = np.zeros((x.shape[1], y.shape[1]))
    xt = x.T.tocsr()
    decay = np.ones((x.shape[1], 1))
    decay[-1] = 0.0  # the bias is not regularised
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= lr * (xt @ (p - y) / x.shape[0] + l2 * decay * w)
    return w


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float((pred & gold).sum())
    denom = float(pred.sum() + gold.sum())
    return 2 * tp / denom if denom else 0.0


def evaluate(rows: list[dict], lang: str, label_set: list[str], multi: bool) -> float:
    """Train on the natural training rows of ``lang``, return test F1 (micro for multi-label)."""
    train = [r for r in rows if r["lang"] == lang and r["split"] == "train" and r["source"] == "natural"]
    test = [r for r in rows if r["lang"] == lang and r["split"] == "test"]
    if not train or not test:
        raise ValueError(f"baseline: no train or test rows for {lang!r}")
    train_feats = [features(r["text"], lang) for r in train]
    counts = Counter(f for feats in train_feats for f in feats)
    vocab = {f: i for i, f in enumerate(sorted(f for f, c in counts.items() if c >= 2))}
    index = {label: i for i, label in enumerate(label_set)}

    def targets(batch: list[dict]) -> np.ndarray:
        y = np.zeros((len(batch), len(label_set)), dtype=bool)
        for i, r in enumerate(batch):
            for label in (r["labels"] if multi else [r["label"]]):
                y[i, index[label]] = True
        return y

    w = fit_logreg(_matrix(train_feats, vocab), targets(train).astype(np.float64))
    scores = _matrix([features(r["text"], lang) for r in test], vocab) @ w
    gold = targets(test)
    if multi:
        return f1(scores > 0, gold)
    positive = 0  # label_set[0] is the positive class
    return f1(scores[:, positive] > 0, gold[:, positive])


def report(data_dir: str | Path) -> dict[str, dict[str, float]]:
    data_dir = Path(data_dir)
    manifest = json.loads((data_dir / MANIFEST).read_text())
    out: dict[str, dict[str, float]] = {}
    for task, labels, multi in (("cc_intent", manifest["cc_labels"], False), ("td_tags", manifest["td_tags"], True)):
        rows = [json.loads(line) for line in open(data_dir / "tasks" / f"{task}.jsonl", encoding="utf-8")]
        out[task] = {lang: evaluate(rows, lang, labels, multi) for lang in manifest["settings"]["languages"]}
    return out


if __name__ == "__main__":
    for task, scores in report(sys.argv[1]).items():
        print(task, " ".join(f"{lang}={score:.3f}" for lang, score in scores.items()))
