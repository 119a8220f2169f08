"""A trimmed fast tokenizer: the teacher's ``tokenizer.json`` with only the kept pieces (new id ``i`` =
teacher id ``kept_ids[i]``) and every id its post-processor, added tokens and padding name remapped.

Why covered text tokenises exactly as before (``tests/test_vocab_trim.py`` checks it):

- **WordPiece** (mBERT) is greedy longest match. If the full vocabulary's segmentation of a word
  uses only kept pieces, then at every step the longest full-vocabulary match is kept, and no
  longer kept match can exist (kept ⊂ full). A word that needs a dropped piece gets shorter kept
  pieces, or ``[UNK]`` when no kept segmentation exists (WordPiece's own rule).
- **Unigram** (XLM-R, me5) is a Viterbi maximum over segmentations. Every trimmed segmentation
  is a full one with the same score, and the full optimum is still available, so it stays the
  optimum, provided the unknown-character score (``min(piece scores) - 10`` in ``tokenizers``)
  does not rise when the rarest pieces go: the kept ``<unk>`` piece carries the full minimum.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

SUPPORTED_MODELS = ("WordPiece", "Unigram")


class UnsupportedTokenizerError(ValueError):
    pass


def _wordpiece(spec: dict[str, Any], kept_ids: Sequence[int]) -> models.Model:
    by_id = {index: piece for piece, index in spec["vocab"].items()}
    missing = [i for i in kept_ids if i not in by_id]
    if missing:
        raise UnsupportedTokenizerError(f"kept ids {missing[:5]} are not pieces of the WordPiece vocabulary")
    vocab = {by_id[old]: new for new, old in enumerate(kept_ids)}
    return models.WordPiece(vocab=vocab, unk_token=spec["unk_token"],
                            continuing_subword_prefix=spec.get("continuing_subword_prefix", "##"),
                            max_input_chars_per_word=spec.get("max_input_chars_per_word", 100))


def _unigram(spec: dict[str, Any], kept_ids: Sequence[int]) -> models.Model:
    pieces = spec["vocab"]
    unk_id = spec.get("unk_id")
    if unk_id is None:
        raise UnsupportedTokenizerError("a Unigram tokenizer without unk_id cannot be trimmed safely")
    if max(kept_ids) >= len(pieces):
        raise UnsupportedTokenizerError(f"kept id {max(kept_ids)} is past the Unigram vocabulary ({len(pieces)} pieces)")
    kept = [(pieces[old][0], float(pieces[old][1])) for old in kept_ids]
    new_unk = list(kept_ids).index(unk_id)
    # Keep the unknown-character score (min score - 10) exactly where the full vocabulary put it.
    full_min = min(float(score) for _, score in pieces)
    if min(score for _, score in kept) > full_min:
        kept[new_unk] = (kept[new_unk][0], full_min)
    return models.Unigram(vocab=kept, unk_id=new_unk, byte_fallback=bool(spec.get("byte_fallback", False)))


def _remap_post_processor(processor: dict[str, Any] | None, new_id: dict[int, int]) -> dict[str, Any] | None:
    if processor is None:
        return None
    kind = processor.get("type")
    if kind == "TemplateProcessing":
        for token in processor["special_tokens"].values():
            token["ids"] = [new_id[i] for i in token["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            piece, index = processor[key]
            processor[key] = [piece, new_id[index]]
    elif kind == "Sequence":
        processor["processors"] = [_remap_post_processor(p, new_id) for p in processor["processors"]]
    elif kind != "ByteLevel":  # ByteLevel names no ids
        raise UnsupportedTokenizerError(f"post-processor {kind!r} is not supported for trimming")
    return processor


def trimmed_tokenizer_json(tokenizer_json: str, kept_ids: Sequence[int]) -> str:
    """The ``tokenizer.json`` text of the trimmed tokenizer (kept ids: strictly increasing old ids)."""
    kept_ids = [int(i) for i in kept_ids]
    if kept_ids != sorted(set(kept_ids)):
        raise ValueError("kept_ids must be strictly increasing")
    spec = json.loads(tokenizer_json)
    kind = spec["model"].get("type")
    if kind not in SUPPORTED_MODELS:
        raise UnsupportedTokenizerError(
            f"cannot trim a {kind} tokenizer (supported: {', '.join(SUPPORTED_MODELS)}); use student.vocab=full"
        )
    model = _wordpiece(spec["model"], kept_ids) if kind == "WordPiece" else _unigram(spec["model"], kept_ids)
    spec["model"] = json.loads(Tokenizer(model).to_str())["model"]
    new_id = {old: new for new, old in enumerate(kept_ids)}
    dropped = [t["content"] for t in spec.get("added_tokens") or [] if t["id"] not in new_id]
    if dropped:
        raise ValueError(f"added tokens {dropped} are not in the kept vocabulary; keep every special token")
    for token in spec.get("added_tokens") or []:
        token["id"] = new_id[token["id"]]
    spec["post_processor"] = _remap_post_processor(spec.get("post_processor"), new_id)
    if spec.get("padding") and spec["padding"].get("pad_id") is not None:
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
    return json.dumps(spec, ensure_ascii=False)


def trim_tokenizer(tokenizer: PreTrainedTokenizerBase, kept_ids: Sequence[int]) -> PreTrainedTokenizerFast:
    """``tokenizer`` (a fast one) restricted to ``kept_ids``, ready for ``save_pretrained``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedTokenizerError(f"{type(tokenizer).__name__} is not a fast tokenizer; only those can be trimmed")
    trimmed = Tokenizer.from_str(trimmed_tokenizer_json(backend.to_str(), kept_ids))
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if v}
    return PreTrainedTokenizerFast(
        tokenizer_object=trimmed,
        model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
        **special,
    )
