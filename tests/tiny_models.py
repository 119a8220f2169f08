"""Tiny, randomly initialised BERT teachers with a real WordPiece tokenizer.

Tests, CI and benchmarks need a masked-LM teacher without any download. These builders
create one from a config in milliseconds and save it in the standard transformers layout, so the
code under test goes through exactly the same ``from_pretrained`` path as a real mBERT run.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# A few hundred frequent words in several languages, enough for the test corpora to tokenise
# into whole words most of the time (and into ## pieces otherwise).
_WORDS = """
the a an and or of to in on for with is are was were be been it this that my your our their i you
we they he she not no yes please thanks thank hello hi order refund delivery account password card
payment where when how what why can could would help need want cancel change update track package
code python java php javascript html css android ios jquery error function class object string list
array int float double return import print file data server client request response database query
el la los las de que y en un una por para con no es mi su pedido reembolso entrega cuenta ayuda
o os as do da em um uma com não é meu seu pedido entrega conta ajuda obrigado
и в не на я что с по это как мой заказ доставка помощь спасибо
the quick brown fox jumps over lazy dog cat sat mat river city history king war music science
""".split()


def tiny_vocab(extra_words: list[str] | None = None) -> list[str]:
    """Return a deterministic WordPiece vocabulary: specials, characters, ## characters, words."""
    chars = list(string.ascii_letters + string.digits + string.punctuation)
    chars += list("áéíóúñçãõâêôàüабвгдежзийклмнопрстуфхцчшщъыьэюяあいうえおかきくけこ日本語")
    return list(dict.fromkeys(SPECIAL_TOKENS + chars + ["##" + c for c in chars] + _WORDS + (extra_words or [])))


def tiny_tokenizer(extra_words: list[str] | None = None, model_max_length: int = 128) -> BertTokenizer:
    vocab = {token: i for i, token in enumerate(tiny_vocab(extra_words))}
    return BertTokenizer(vocab=vocab, do_lower_case=False, model_max_length=model_max_length)


def tiny_bert_config(vocab_size: int, **overrides: int | float) -> BertConfig:
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    return BertConfig(**{**settings, **overrides})


def build_tiny_teacher(output_dir: str | Path, seed: int = 0, **config_overrides: int | float) -> Path:
    """Write a tiny random ``BertForMaskedLM`` plus tokenizer to ``output_dir`` and return it."""
    output_dir = Path(output_dir)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    model = BertForMaskedLM(tiny_bert_config(len(tokenizer), **config_overrides))
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def build_wide_encoder(output_dir: str | Path, layers: int = 6, seed: int = 0) -> Path:
    """A random ``DistilBertModel`` with DistilmBERT's width (768, 12 heads, FFN 3072) and the tiny
    WordPiece tokenizer: realistic compute per token for benchmarks, no download."""
    from transformers import DistilBertConfig, DistilBertModel

    output_dir = Path(output_dir)
    tokenizer = tiny_tokenizer(model_max_length=512)
    config = DistilBertConfig(vocab_size=len(tokenizer), n_layers=layers, dim=768, n_heads=12, hidden_dim=3072,
                              max_position_embeddings=512)
    torch.manual_seed(seed)
    DistilBertModel(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
