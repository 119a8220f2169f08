"""Python API: encode each text once, run every relevant head on the shared token outputs.

    predictor = Predictor(load_bundle("outputs/bundle"))
    predictor.predict(["where is my order?"], langs="eng")              # every eng head
    predictor.predict(texts, tasks=["cc_intent"], text_langs=row_langs)  # per-row language

A text that a head's shorter ``max_length`` truncates is encoded again at that limit, because a
bidirectional encoder's outputs for the first tokens depend on the tokens after them: each head
sees exactly the features it was trained on (docs/serving.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from domain_distil.classification.features import pad_batch
from domain_distil.classification.metrics import probabilities
from domain_distil.common.errors import UserInputError
from domain_distil.serving.bundle_format import HeadSpec
from domain_distil.serving.bundle_load import Bundle

# (input_ids (B, n), attention_mask (B, n)) -> last hidden state (B, n, d), float32
EncoderFn = Callable[[Tensor, Tensor], Tensor]


class UnknownFilterError(UserInputError):
    """A language or task filter names something the bundle has no head for."""


def torch_encoder(model: nn.Module, device: str | torch.device = "cpu") -> EncoderFn:
    model = model.to(device).eval()

    @torch.inference_mode()
    def encode(input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
        return out.last_hidden_state.float()

    return encode


def _as_set(value: str | Sequence[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def _refuse_unknown(name: str, wanted: set[str] | None, known: list[str]) -> None:
    unknown = sorted((wanted or set()) - set(known))
    if unknown:
        raise UnknownFilterError(f"unknown {name} {', '.join(map(repr, unknown))}; the bundle has {known}")


def head_output(spec: HeadSpec, probs: Tensor) -> dict[str, Any]:
    """One head's answer for one text. ``probs``: P(positive) (binary, 0-dim) or per-label (L,)."""
    base = {"task": spec.task, "lang": spec.lang, "type": spec.task_type, "threshold": spec.threshold}
    if spec.task_type == "binary":
        p = float(probs)
        negative = next(label for label in spec.labels if label != spec.positive_label)
        return {**base, "label": spec.positive_label if p >= spec.threshold else negative,
                "positive_label": spec.positive_label, "probability": p}
    values = [float(v) for v in probs]
    thresholds = spec.threshold if isinstance(spec.threshold, list) else [spec.threshold] * len(values)
    chosen = [label for label, p, t in zip(spec.labels, values, thresholds, strict=True) if p >= t]
    return {**base, "labels": chosen,
            "probabilities": dict(zip(spec.labels, values, strict=True))}


class Predictor:
    """Every head of a bundle on one shared encoder.

    :param bundle: a loaded bundle (``serving.bundle_load.load_bundle``).
    :param encoder_fn: replaces the bundle's fp32 PyTorch encoder (e.g. int8 or ONNX Runtime,
        ``serving.quantize``); same contract as :func:`torch_encoder`.
    :param batch_size: texts per encoder forward pass.
    """

    def __init__(self, bundle: Bundle, encoder_fn: EncoderFn | None = None, batch_size: int = 32,
                 device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bundle = bundle
        self.specs: dict[str, HeadSpec] = dict(bundle.heads)
        self.heads: dict[str, nn.Module] = {key: spec.build().to(device) for key, spec in self.specs.items()}
        self.encoder_fn = encoder_fn or torch_encoder(bundle.encoder, device)
        self.tokenizer = bundle.tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.batch_size = batch_size
        self.encoded_rows = 0  # encoder rows run so far (a text truncated twice counts twice)

    def select(self, langs: str | Sequence[str] | None = None, tasks: str | Sequence[str] | None = None) -> list[str]:
        """Head keys matching the filters (None = all); an unknown language or task is an error."""
        lang_set, task_set = _as_set(langs), _as_set(tasks)
        _refuse_unknown("language", lang_set, self.bundle.langs)
        _refuse_unknown("task", task_set, self.bundle.tasks)
        return [key for key, s in sorted(self.specs.items())
                if (lang_set is None or s.lang in lang_set) and (task_set is None or s.task in task_set)]

    def predict(self, texts: Sequence[str], langs: str | Sequence[str] | None = None,
                tasks: str | Sequence[str] | None = None,
                text_langs: Sequence[str | None] | None = None) -> list[list[dict[str, Any]]]:
        """Per text, the outputs of every head that matches ``langs`` and ``tasks``; with
        ``text_langs`` (one language or None per text), a text only gets its own language's heads."""
        keys = self.select(langs, tasks)
        if text_langs is None:
            return self.predict_rows(texts, [keys] * len(texts))
        if len(text_langs) != len(texts):
            raise ValueError(f"text_langs has {len(text_langs)} entries for {len(texts)} texts")
        _refuse_unknown("language", {lang for lang in text_langs if lang is not None}, self.bundle.langs)
        rows = [[k for k in keys if lang is None or self.specs[k].lang == lang] for lang in text_langs]
        return self.predict_rows(texts, rows)

    def _units(self, texts: Sequence[str], row_keys: Sequence[Sequence[str]]) -> dict[tuple[int, int], tuple[list[int], list[str]]]:
        """Encoder inputs: (row, token count) -> (ids, head keys fed by them). Token lists shared
        by several truncation limits are one unit."""
        ids_at: dict[int, dict[int, list[int]]] = {}  # limit -> row -> ids
        needed = sorted({self.specs[k].max_length for keys in row_keys for k in keys}, reverse=True)
        for limit in needed:
            rows = [i for i, keys in enumerate(row_keys) if any(self.specs[k].max_length == limit for k in keys)]
            encoded = self.tokenizer([texts[i] for i in rows], truncation=True, max_length=limit)["input_ids"]
            ids_at[limit] = dict(zip(rows, (list(e) for e in encoded), strict=True))
        units: dict[tuple[int, int], tuple[list[int], list[str]]] = {}
        for row, keys in enumerate(row_keys):
            for key in keys:
                ids = ids_at[self.specs[key].max_length][row]
                units.setdefault((row, len(ids)), (ids, []))[1].append(key)
        return units

    @torch.inference_mode()
    def predict_rows(self, texts: Sequence[str], row_keys: Sequence[Sequence[str]]) -> list[list[dict[str, Any]]]:
        """Outputs for ``texts[i]`` from the heads ``row_keys[i]`` (in that order)."""
        if len(texts) != len(row_keys):
            raise ValueError(f"{len(row_keys)} head lists for {len(texts)} texts")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {i} is empty or not a string")
        results: list[dict[str, dict[str, Any]]] = [{} for _ in texts]
        units = self._units(texts, row_keys)
        order = sorted(units, key=lambda u: -u[1])  # longest first: batches of similar length
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            input_ids, mask = pad_batch([units[u][0] for u in batch], self.pad_id)
            hidden = self.encoder_fn(input_ids, mask)
            self.encoded_rows += len(batch)
            mask = mask.to(hidden.device)
            consumers: dict[str, list[int]] = defaultdict(list)
            for index, unit in enumerate(batch):
                for key in units[unit][1]:
                    consumers[key].append(index)
            for key, indices in consumers.items():
                spec = self.specs[key]
                select = torch.tensor(indices, device=hidden.device)
                sub_mask = mask.index_select(0, select)
                width = int(sub_mask.sum(1).max())  # trim the batch's padding beyond these rows
                logits = self.heads[key](hidden.index_select(0, select)[:, :width], sub_mask[:, :width]).logits
                probs = probabilities(logits, spec.task_type).cpu()
                for index, p in zip(indices, probs, strict=True):
                    results[batch[index][0]][key] = head_output(spec, p)
        return [[results[row][key] for key in keys] for row, keys in enumerate(row_keys)]
