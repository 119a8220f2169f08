"""Stage: fit a masked-LM head on a frozen encoder that ships without one (sentence-embedding teachers).

The paper's soft-target loss needs the teacher's token distribution, but e5 and MiniLM were
released as bare encoders. ``fit_mlm_head`` adds BERT's head (transform = dense + GELU + LayerNorm,
then a decoder tied to the word embeddings plus a bias), keeps every body weight frozen and
bit-identical, and trains only the head with standard BERT masking (15 % of the non-special tokens;
80 % [MASK], 10 % random, 10 % unchanged) on the given texts. The result is cached under a content
hash of (model folder, texts, settings) and loads with ``AutoModelForMaskedLM.from_pretrained``.

Restricted, sampled softmax. With a 250k vocabulary a full softmax costs targets x 250k x hidden
multiply-adds forward and again backward, more than the frozen body's forward on CPU. During fitting
the logits cover (a) every vocabulary id that occurs in the fitting texts (all targets are among
them; a few percent of the vocabulary for the demo corpora) and (b) ``negatives`` ids drawn
uniformly per step from the never-seen rest, whose logits get the sampled-softmax correction
log(|unseen| / negatives) so they stand in for the whole rest. Seen ids have their own bias
(started at the log unigram frequency); never-seen ids share one learned bias (they are all rarer
than anything in the texts, and no text can tell them apart). The saved decoder covers the full
vocabulary: its weight is the frozen embedding matrix, its bias the fitted per-id / shared values.
Without (b) the transform never learns to push the 240k unseen rows down and the full-vocabulary
loss stays near its random-head value. ``mlm_head.json`` records the full-vocabulary masked-LM
loss on a held-out batch before and after fitting, so the approximation is checked on every fit.

Measured for me5_small on the 2 MB demo in-domain corpus (5 languages, 5,957 distinct ids), one
thread on a shared 2-core machine: steps=120, batch_size=16, max_length=64, lr=3e-3 took 105 s with
epochs=1, negatives=8192 (held-out full-vocabulary loss 8.50 -> 5.91 nats) and 170 s with epochs=4,
negatives=2048 (8.50 -> 4.94; the teacher configs' default). Restricting to seen ids only, without
the sampled negatives, left the full-vocabulary loss near 12.7 in a trial run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer

from domain_distil.common.hashing import hash_dir, hash_object, short
from domain_distil.common.io import HEAD_RECORD, write_json
from domain_distil.common.locking import build_entry
from domain_distil.common.progress import progress
from domain_distil.modeling.mlm_head import HEAD_PREFIX, full_vocab_loss, load_with_fresh_head

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


def fit_mlm_head(
    model_dir: str | Path,
    texts: Iterable[str] | list[str],
    cache_dir: str | Path,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    max_length: int,
    seed: int,
    negatives: int = 2048,
    epochs: int = 1,
) -> Path:
    """Return a cached ``BertForMaskedLM`` folder: ``model_dir``'s frozen body plus a head fitted in
    ``epochs`` passes over ``steps`` batches of ``batch_size`` texts (truncated to ``max_length`` tokens)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"fit_mlm_head: {model_dir} has no config.json (expected a transformers folder)")
    if steps < 1 or batch_size < 1 or max_length < 8 or not lr > 0 or epochs < 1:
        raise ValueError(
            f"fit_mlm_head: need steps >= 1, batch_size >= 1, max_length >= 8, lr > 0, epochs >= 1; "
            f"got steps={steps}, batch_size={batch_size}, max_length={max_length}, lr={lr}, epochs={epochs}"
        )
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("fit_mlm_head: no non-empty texts to fit the head on")
    settings = {
        "steps": steps, "batch_size": batch_size, "lr": lr, "max_length": max_length, "seed": seed,
        "negatives": negatives, "epochs": epochs,
    }
    key = hash_object(
        {"model": hash_dir(model_dir), "texts": hashlib.sha256("".join(f"{t}\n" for t in texts).encode()).hexdigest(),
         "settings": settings, "v": _FORMAT_VERSION}
    )
    target = Path(cache_dir) / "mlm_heads" / f"{model_dir.name}-{short(key)}"

    def fit_into(tmp: Path) -> None:
        stats = _fit(model_dir, texts, tmp, **settings)
        write_json(tmp / HEAD_RECORD, {"kind": "mlm_head", "base": str(model_dir), "key": key,
                                    "settings": settings, **stats})

    # Every DDP rank and sweep job asks for the same head: one fits it under the lock, the rest wait.
    return build_entry(target, fit_into, is_complete=lambda path: (path / HEAD_RECORD).is_file())


def _fit(
    model_dir: Path, texts: list[str], out_dir: Path, *, steps: int, batch_size: int, lr: float,
    max_length: int, seed: int, negatives: int, epochs: int,
) -> dict:
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # sequences with fewer than 2 ordinary tokens teach the head nothing
    encoded = [ids for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if len(ids) >= 4]
    if len(encoded) < 2:
        raise ValueError(f"fit_mlm_head: the texts give {len(encoded)} usable sequences (need >= 2 of >= 4 tokens)")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(encoded), generator=generator).tolist()
    heldout_n = min(max(batch_size, 2), max(1, len(encoded) // 10))
    heldout = [encoded[i] for i in order[:heldout_n]]
    train = [encoded[i] for i in order[heldout_n:]] or heldout

    model = load_with_fresh_head(model_dir, seed)
    model.eval()  # no dropout: the frozen body must produce the features the head will see later
    body_params = [p for name, p in model.named_parameters() if not name.startswith(HEAD_PREFIX)]
    for p in body_params:
        p.requires_grad_(False)
    head = model.cls.predictions
    # the transform; the decoder bias is trained through bias_seen / bias_unseen below
    trainable = [
        p for name, p in model.named_parameters()
        if name.startswith(HEAD_PREFIX) and p.requires_grad and not name.endswith("predictions.bias")
    ]

    specials = set(tokenizer.all_special_ids)
    vocab_size = model.config.vocab_size
    counts = torch.bincount(torch.tensor([i for ids in encoded for i in ids]), minlength=vocab_size).double()
    counts[sorted(specials)] = 0
    seen_ids = counts.nonzero().squeeze(1)
    unseen_ids = (counts == 0).nonzero().squeeze(1)
    n_neg = min(negatives, len(unseen_ids))
    # target id -> column of the restricted logits
    column = torch.full((vocab_size,), -1, dtype=torch.long)
    column[seen_ids] = torch.arange(len(seen_ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    special_tensor = torch.tensor(sorted(specials | {pad_id}))

    # Biases start at the log unigram frequency; the never-seen ids share one bias, started below
    # a single occurrence, and learn it through the sampled negatives.
    total = counts.sum()
    bias_seen = nn.Parameter(torch.log(counts[seen_ids] / total).float())
    bias_unseen = nn.Parameter(torch.log(0.5 / total).float().reshape(()))

    def write_bias() -> None:
        with torch.no_grad():
            head.bias[seen_ids] = bias_seen
            head.bias[unseen_ids] = bias_unseen

    def corrupt(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(batch, torch.isin(batch, special_tensor), tokenizer.mask_token_id, seen_ids, generator)

    heldout_ids, heldout_labels = corrupt(next(_batches(heldout, len(heldout), pad_id, generator)))
    write_bias()
    loss_before = full_vocab_loss(model, heldout_ids, heldout_labels, pad_id)

    trainable = [*trainable, bias_seen, bias_unseen]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    total_steps = steps * epochs
    warmup = max(1, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    batches = _batches(train, batch_size, pad_id, generator)
    embeddings = model.bert.embeddings.word_embeddings.weight  # frozen, tied to the decoder
    seen_weight = embeddings[seen_ids]
    # sampled-softmax correction: each drawn negative stands for |unseen| / n_neg of them
    log_share = math.log(len(unseen_ids) / n_neg) if n_neg else 0.0
    # The frozen body's output at the masked positions is all the head sees, and the body's
    # forward is the cost: compute it once per batch and replay it for the later epochs.
    cached: list[tuple[torch.Tensor, torch.Tensor]] = []
    losses: list[float] = []
    with progress("fitting MLM head") as report:
        for step in range(total_steps):
            if step < steps:
                ids, labels = corrupt(next(batches))
                with torch.no_grad():
                    hidden = model.bert(input_ids=ids, attention_mask=(ids != pad_id).long()).last_hidden_state
                where = labels != -100
                cached.append((hidden[where], column[labels[where]]))
                features, targets = cached[-1]
            else:
                if step % steps == 0:
                    replay = torch.randperm(steps, generator=generator).tolist()
                features, targets = cached[replay[step % steps]]
            transformed = head.transform(features)  # [targets, hidden]
            logits = transformed @ seen_weight.T + bias_seen
            if n_neg:
                negative = unseen_ids[torch.randint(len(unseen_ids), (n_neg,), generator=generator)]
                neg_logits = transformed @ embeddings[negative].T + (bias_unseen + log_share)
                logits = torch.cat([logits, neg_logits], dim=1)
            loss = nn.functional.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            report.update(fraction=(step + 1) / total_steps, steps=step + 1)

    write_bias()
    loss_after = full_vocab_loss(model, heldout_ids, heldout_labels, pad_id)
    if not math.isfinite(loss_after):
        raise FloatingPointError(f"fit_mlm_head: held-out loss is {loss_after} after fitting; lower lr ({lr})")
    log.info("MLM head fitted in %d steps: training loss %.3f -> %.3f, held-out full-vocabulary loss %.3f -> %.3f",
             total_steps, losses[0], losses[-1], loss_before, loss_after)

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    window = max(1, min(10, total_steps // 5))
    return {
        "train_loss_first": sum(losses[:window]) / window,
        "train_loss_last": sum(losses[-window:]) / window,
        "heldout_full_vocab_loss_before": loss_before,
        "heldout_full_vocab_loss_after": loss_after,
        "restricted_vocab_size": len(seen_ids),
        "sampled_negatives": n_neg,
        "sequences": len(encoded),
        "seconds": time.perf_counter() - started,
    }


def _batches(encoded: list[list[int]], batch_size: int, pad_id: int,
             generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Tokenised texts served as shuffled, right-padded batches (epoch after epoch)."""
    order: list[int] = []
    while True:
        rows = []
        for _ in range(batch_size):
            if not order:
                order = torch.randperm(len(encoded), generator=generator).tolist()
            rows.append(encoded[order.pop()])
        yield nn.utils.rnn.pad_sequence([torch.tensor(row) for row in rows], batch_first=True, padding_value=pad_id)


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mask_id: int,
    random_ids: torch.Tensor,
    generator: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: returns (corrupted ids, labels with -100 where not a target).

    ``special`` marks positions that are never targets (specials and padding); every row with at
    least one ordinary token gets at least one target so no sequence is wasted.
    """
    eligible = ~special
    draw = torch.rand(input_ids.shape, generator=generator)
    targets = (draw < probability) & eligible
    # guarantee one target per row: the eligible position with the smallest draw
    lowest = torch.where(eligible, draw, torch.full_like(draw, 2.0)).argmin(dim=1)
    has_eligible = eligible.any(dim=1)
    targets[has_eligible, lowest[has_eligible]] = True
    labels = torch.where(targets, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator)
    corrupted = input_ids.clone()
    corrupted[targets & (action < 0.8)] = mask_id
    swap = targets & (action >= 0.8) & (action < 0.9)
    picks = torch.randint(len(random_ids), (int(swap.sum()),), generator=generator)
    corrupted[swap] = random_ids[picks]
    return corrupted, labels
