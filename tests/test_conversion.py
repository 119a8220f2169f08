"""conversion: batched ONNX export equals per-row ONNX and fp32; int8 agrees with fp32; the int8
settings change the graph as stated and key the cache; the exports are cached; tokenizer coverage on
a hand-made pair of tokenizers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel, AutoTokenizer, BertTokenizer

from domain_distil.analysis.coverage import coverage_against_first, same_vocabulary, tokenizer_coverage
from domain_distil.classification.features import pad_batch
from domain_distil.conversion.int8 import Int8Settings, int8_instructions, matmul_roles
from domain_distil.conversion.runners import Runner, torch_runner
from domain_distil.conversion.variants import int8_graph, onnx_graph, variant_runner
from domain_distil.modeling.tiny import SPECIAL_TOKENS, build_tiny_teacher, tiny_tokenizer

onnx = pytest.importorskip("onnx")  # the `serve` extra, installed by the README and CI
pytest.importorskip("onnxruntime")

TEXTS = [
    "where is my order", "please cancel my account and refund the card payment", "hello",
    "python function return list", "el pedido no es mi cuenta", "thanks for the help with the delivery",
    "java class object string error", "how can i change my password", "the quick brown fox jumps over the lazy dog",
    "mi pedido", "server request response database query", "i want a refund please", "hi",
    "track package delivery", "could you help me update my card", "import data file print",
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, object, Path]:
    """A one-layer tiny BERT (export time grows with the layer count) and a variants folder."""
    root = tmp_path_factory.mktemp("conversion")
    folder = build_tiny_teacher(root / "model", num_hidden_layers=1)
    return AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder), root / "variants"


def _batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    ids = tokenizer(texts)["input_ids"]
    input_ids, mask = pad_batch([list(i) for i in ids], tokenizer.pad_token_id)
    return {"input_ids": input_ids, "attention_mask": mask}


def _rows(runner: Runner, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Each row run alone on its real tokens."""
    out = []
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
        n = int(mask.sum())
        out.append(runner({"input_ids": ids[None, :n], "attention_mask": mask[None, :n]})[0])
    return out


@pytest.mark.slow
def test_onnx_batches_and_int8_agree_with_fp32(encoder) -> None:
    """One slow test, as the ONNX export alone takes seconds; every variant check reuses it."""
    model, tokenizer, folder = encoder
    # Batched ONNX == per-row ONNX == fp32 PyTorch, on a padded batch of different lengths.
    runner, fp32_size = variant_runner("onnx", model, folder)
    batch = _batch(tokenizer, TEXTS[:5])
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) >= 4
    batched = runner(batch)
    assert batched.shape[:2] == tuple(batch["input_ids"].shape)
    reference = torch_runner(model)(batch)
    for row, (alone, n) in enumerate(zip(_rows(runner, batch), lengths, strict=True)):
        np.testing.assert_allclose(batched[row, :n], alone, atol=1e-5)
        np.testing.assert_allclose(batched[row, :n], reference[row, :n], atol=1e-5)
    # Batch and sequence axes are symbolic in the graph, not fixed at the trace's 2 x 8.
    graph = onnx_graph(model, folder)
    dims = onnx.load(str(graph)).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param and not d.dim_value for d in dims)
    # Built once: a second request reuses the file.
    stamp = graph.stat().st_mtime_ns
    assert onnx_graph(model, folder) == graph and graph.stat().st_mtime_ns == stamp

    # int8 (default settings: dynamic, per-channel): quantized MatMuls, smaller file, close to fp32
    # on every text of a padded batch.
    int8, int8_size = variant_runner("int8", model, folder)
    ops = {node.op_type for node in onnx.load(str(folder / f"int8-{Int8Settings().key()}" / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "MatMulNBits" not in ops
    # The tiny model is mostly its fp32 embedding table, which stays fp32.
    assert int8_size < 0.9 * fp32_size
    batch = _batch(tokenizer, TEXTS)
    mask = batch["attention_mask"].numpy().astype(bool)
    reference, candidate = torch_runner(model)(batch), int8(batch)
    difference = np.abs(reference - candidate)[mask]
    assert 0.0 < difference.max() < 0.25  # quantized (not the fp32 graph), yet close
    # A fixed random 8-way head on the first token: int8 picks the same class for >= 15/16 texts.
    head = np.random.default_rng(0).normal(size=(reference.shape[-1], 8))
    same = (reference[:, 0] @ head).argmax(1) == (candidate[:, 0] @ head).argmax(1)
    assert same.mean() >= 15 / 16


def _nodes(graph: Path) -> list:
    return list(onnx.load(str(graph), load_external_data=False).graph.node)


def _initializers(graph: Path) -> dict[str, np.ndarray]:
    return {init.name: onnx.numpy_helper.to_array(init) for init in onnx.load(str(graph)).graph.initializer}


def test_matmul_roles_follow_the_graph(encoder) -> None:
    """One BERT layer: Q, K, V read one tensor; the FFN's two MatMuls sit around the GELU."""
    model, _, folder = encoder
    roles = matmul_roles(onnx_graph(model, folder))
    assert sorted(roles.values()) == ["attn_out", "ffn_in", "ffn_out", "qkv", "qkv", "qkv"]


def test_int8_settings_change_the_graph_and_the_cache_key(encoder) -> None:
    model, tokenizer, folder = encoder
    block = Int8Settings(method="blockwise")
    dynamic = Int8Settings(method="dynamic", per_channel=False, reduce_range=False)
    per_channel = Int8Settings(method="dynamic", per_channel=True, reduce_range=True)
    kept_ffn = Int8Settings(method="dynamic", per_channel=True, reduce_range=True, exclude=("ffn_out",))
    settings = (block, dynamic, per_channel, kept_ffn)
    # Each setting is its own cache entry; a knob the method does not use changes nothing.
    assert len({s.key() for s in settings}) == 4
    assert Int8Settings(method="blockwise", per_channel=False).key() == block.key()
    assert Int8Settings() == per_channel  # the default: dynamic, per-channel, 7-bit weights
    graphs = {s: int8_graph(model, folder, s) for s in settings}
    assert len({g.parent for g in graphs.values()}) == 4

    # Block-wise: every weight MatMul is an 8-bit MatMulNBits with int8 compute, blocks of 16.
    nbits = [n for n in _nodes(graphs[block]) if n.op_type == "MatMulNBits"]
    assert len(nbits) == 6
    for node in nbits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, 16, 4)
    # Dynamic: one weight scale per tensor, full int8 range; per_channel: one per output column,
    # reduce_range: 7-bit values.
    for s, scale_shape, limit in ((dynamic, (), 127), (per_channel, (model.config.hidden_size,), 64)):
        nodes = _nodes(graphs[s])
        assert sum(n.op_type == "MatMulInteger" for n in nodes) == 6
        weights = _initializers(graphs[s])
        attn_out = next(n for n in nodes if n.op_type == "MatMulInteger" and "layer_norm" not in n.input[0])
        weight = attn_out.input[1]
        assert weights[weight].dtype == np.int8 and np.abs(weights[weight]).max() <= limit
        assert weights[weight.replace("_quantized", "_scale")].shape == scale_shape
    assert np.abs(next(v for k, v in _initializers(graphs[dynamic]).items() if k.endswith("_quantized"))).max() > 64
    # exclude=ffn_out: the MatMul after the GELU stays fp32, the other five are quantized.
    nodes = _nodes(graphs[kept_ffn])
    produced_by = {out: n.op_type for n in nodes for out in n.output}
    assert sum(n.op_type == "MatMulInteger" for n in nodes) == 5
    assert any(n.op_type == "MatMul" and produced_by.get(n.input[0]) == "Gelu" for n in nodes)

    # Every setting stays close to fp32 on a padded batch.
    batch = _batch(tokenizer, TEXTS)
    mask = batch["attention_mask"].numpy().astype(bool)
    reference = torch_runner(model)(batch)
    for s in settings:
        runner, _ = variant_runner("int8", model, folder, 1, s)
        assert 0.0 < np.abs(runner(batch) - reference)[mask].max() < 0.25, s


def test_int8_settings_validate_and_match_the_config_group() -> None:
    group = yaml.safe_load((Path(__file__).parents[1] / "conf" / "int8" / "default.yaml").read_text())
    assert Int8Settings.from_config(group) == Int8Settings()
    assert Int8Settings.from_config({"method": "dynamic", "exclude": ["ffn_out"]}).exclude == ("ffn_out",)
    with pytest.raises(ValueError, match="int8.method='fp16'"):
        Int8Settings(method="fp16")
    with pytest.raises(ValueError, match="unknown MatMul role"):
        Int8Settings(exclude=("attention",))
    with pytest.raises(ValueError, match="power of two"):
        Int8Settings(block_size=24)
    with pytest.raises(ValueError, match="unknown int8 setting"):
        Int8Settings.from_config({"bits": 4})


def test_int8_instructions_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    def cpu(flags: str) -> Path:
        path = tmp_path / f"cpuinfo-{len(list(tmp_path.iterdir()))}"
        # two logical CPUs, as /proc/cpuinfo lists them: the flags line repeats
        path.write_text("".join(f"processor\t: {i}\nmodel name\t: X\nflags\t\t: {flags}\n\n" for i in range(2)))
        return path

    assert int8_instructions(cpu("fpu sse2 avx avx2 fma")) == "AVX2, no VNNI/AMX"
    assert int8_instructions(cpu("avx2 avx512f avx512_vnni amx_tile amx_int8")) == "avx512_vnni, amx_int8"
    assert int8_instructions(cpu("avx2 avx_vnni")) == "avx_vnni"
    assert int8_instructions(cpu("sse2")) == "neither AVX2 nor VNNI/AMX"
    assert int8_instructions(tmp_path / "absent").startswith("unknown")


def test_unknown_variant_is_refused(encoder) -> None:
    model, _, folder = encoder
    with pytest.raises(ValueError, match="unknown encoder variant 'fp16'"):
        variant_runner("fp16", model, folder)


def _trimmed_tokenizer() -> BertTokenizer:
    """Specials, lower-case letters and their ## forms, and two whole words."""
    letters = list("abcdefghijklmnopqrstuvwxyz")
    tokens = [*SPECIAL_TOKENS, *letters, *("##" + c for c in letters), "hello", "order"]
    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=False)


def test_coverage_on_a_hand_made_pair() -> None:
    reference, trimmed = tiny_tokenizer(), _trimmed_tokenizer()
    coverage = tokenizer_coverage(reference, trimmed, ["hello order", "refund order", "hello ñ"])
    # hello, order, order, hello: same pieces; refund -> r ##e ##f ##u ##n ##d; ñ -> [UNK].
    assert coverage.words == 6
    assert coverage.identical_share == pytest.approx(4 / 6)
    assert coverage.unk_share == pytest.approx(1 / 11)  # 1 + 1 + 6 + 1 + 1 + 1 pieces
    assert coverage.reference_unk_share == 0.0
    assert same_vocabulary(reference, tiny_tokenizer()) and not same_vocabulary(reference, trimmed)
    pairs = [("teacher", reference), ("student", tiny_tokenizer()), ("trimmed", trimmed)]
    assert list(coverage_against_first(pairs, ["hello order"])) == ["trimmed"]
    with pytest.raises(ValueError, match="at least one word"):
        tokenizer_coverage(reference, trimmed, ["   "])
