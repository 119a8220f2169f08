"""Tokenizer coverage: how much of held-out text a tokenizer cuts exactly as a reference does.

A student with a trimmed vocabulary (``student.vocab=trim``) falls back to shorter pieces or the
unknown token outside its domain. Pieces are compared as strings, since trimming renumbers the ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Coverage:
    words: int  # held-out words compared
    identical_share: float  # words the candidate cuts into the same pieces as the reference
    unk_share: float  # candidate pieces that are its unknown token
    reference_unk_share: float  # the same for the reference, the floor the candidate can reach


def _pieces(tokenizer: PreTrainedTokenizerBase, word: str) -> list[str]:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    return tokenizer.convert_ids_to_tokens(ids)


def _unk_count(tokenizer: PreTrainedTokenizerBase, pieces: Sequence[str]) -> int:
    unk = tokenizer.unk_token
    return 0 if unk is None else sum(piece == unk for piece in pieces)


def tokenizer_coverage(reference: PreTrainedTokenizerBase, candidate: PreTrainedTokenizerBase,
                       texts: Sequence[str]) -> Coverage:
    """Coverage of ``candidate`` against ``reference`` on the whitespace-separated words of
    ``texts``; each word goes through each tokenizer's own normalizer (lower-casing, accents).

    Tokenized alone, a word gets the same pieces as inside its sentence for WordPiece and for
    SentencePiece (whose word-initial marker stands for the space before it). In scripts written
    without spaces a "word" is a whole run of text, which makes the identical share stricter there.
    """
    words = identical = cand_pieces = cand_unk = ref_pieces = ref_unk = 0
    for text in texts:
        for word in text.split():
            ref, cand = _pieces(reference, word), _pieces(candidate, word)
            words += 1
            identical += ref == cand
            cand_pieces += len(cand)
            cand_unk += _unk_count(candidate, cand)
            ref_pieces += len(ref)
            ref_unk += _unk_count(reference, ref)
    if words == 0:
        raise ValueError("tokenizer coverage needs held-out texts with at least one word")
    return Coverage(words, identical / words, cand_unk / max(cand_pieces, 1), ref_unk / max(ref_pieces, 1))


def same_vocabulary(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """True when both tokenizers map the same pieces to the same ids (coverage is then 100 %)."""
    return a.get_vocab() == b.get_vocab()


def coverage_against_first(tokenizers: Sequence[tuple[str, PreTrainedTokenizerBase]],
                           texts: Sequence[str]) -> dict[str, Coverage]:
    """Per encoder id, coverage against the first tokenizer (the teacher in Table 5's lists), for
    every later tokenizer whose vocabulary differs from it."""
    if not tokenizers:
        return {}
    (_, reference), *others = tokenizers
    return {name: tokenizer_coverage(reference, tokenizer, texts)
            for name, tokenizer in others if not same_vocabulary(reference, tokenizer)}
