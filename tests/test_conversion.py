"""conversion: batched ONNX export equals per-row ONNX and fp32; int8 agrees with fp32; the int8
settings change the graph as stated and key the cache; the exports are cached; tokenizer coverage on
a hand-made pair of tokenizers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_models import SPECIAL_TOKENS, build_tiny_teacher, tiny_tokenizer
from transformers import AutoModel, AutoTokenizer, BertTokenizer

import domain_distil.conversion.variants as variants
from domain_distil.analysis.coverage import coverage_against_first, same_vocabulary, tokenizer_coverage
from domain_distil.classification.features import pad_batch
from domain_distil.common import cpu
from domain_distil.common.errors import ConfigError
from domain_distil.conversion.int8 import Int8Settings, has_int8_dot_products, int8_instructions, read_record
from domain_distil.conversion.int8_auto import Calibration, choose_exclusions, pooled_error, pooled_outputs
from domain_distil.conversion.int8_layers import MatMulLayer, graph_layers, select_layers, token_scale
from domain_distil.conversion.runners import Runner, onnx_session_runner, torch_runner
from domain_distil.conversion.variants import int8_graph, onnx_graph, variant_runner
from domain_distil.serving.quantize import int8_record

onnx = pytest.importorskip("onnx")  # the `serve` extra, installed by the README and CI
pytest.importorskip("onnxruntime")

TEXTS = [
    "where is my order", "please cancel my account and refund the card payment", "hello",
    "python function return list", "el pedido no es mi cuenta", "thanks for the help with the delivery",
    "java class object string error", "how can i change my password", "the quick brown fox jumps over the lazy dog",
    "mi pedido", "server request response database query", "i want a refund please", "hi",
    "track package delivery", "could you help me update my card", "import data file print",
]
# Held-out text for int8.exclude=auto, disjoint from TEXTS (on which agreement is measured).
CALIBRATION = [
    "my card payment failed", "where is the package", "hello there thanks", "python list error",
    "cancel the order please", "database server query", "el reembolso de mi cuenta", "the river city history",
    "help me with my password", "java string class",
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

    # The attention is exported in its plain form (no scaled_dot_product_attention mask guards).
    exported = [node.op_type for node in _nodes(graph)]
    assert "IsNaN" not in exported and "Softmax" in exported

    # int8 (default settings: dynamic, token-scaled, exclude=auto measured on other texts):
    # quantized MatMuls, the excluded ones block-wise, smaller file, close to fp32 on every text of
    # a padded batch.
    calibration = Calibration.from_texts(tokenizer, CALIBRATION)
    int8, int8_size = variant_runner("int8", model, folder, int8=Int8Settings(), calibration=calibration)
    int8_path = int8_graph(model, folder, Int8Settings(), calibration)
    ops = [node.op_type for node in _nodes(int8_path)]
    record = read_record(int8_path)
    assert set(record["sensitivity"]) == {layer.label for layer in _layers(graph)}
    assert ops.count("MatMulNBits") == len(record["excluded"]) >= 1
    assert "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops
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


@pytest.fixture(scope="module")
def outlier_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, object, Path]:
    """A one-layer tiny BERT with the outlier real encoders have (docs/serving.md): one GELU channel
    fires (about 32) at the first position only while the others stay under 0.3, and its FFN
    branch matters (output weights x5, the outlier channel's near zero)."""
    root = tmp_path_factory.mktemp("outlier")
    folder = build_tiny_teacher(root / "model", num_hidden_layers=1)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        model.embeddings.position_embeddings.weight[0, 0] += 8.0  # position 0 stands out in dimension 0
        ffn_in, ffn_out = model.encoder.layer[0].intermediate.dense, model.encoder.layer[0].output.dense
        ffn_in.weight[5].zero_()
        ffn_in.weight[5, 0], ffn_in.bias[5] = 30.0, -135.0  # channel 5 fires there only
        ffn_out.weight.mul_(5.0)
        ffn_out.weight[:, 5] = 0.01
    return model, AutoTokenizer.from_pretrained(folder), root / "variants"


def _probe_decisions(pooled: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """8 fixed random directions over the mean-pooled outputs standardised as a head does: one
    decision per (text, direction), 16 x 8 = 128 here."""
    directions = np.random.default_rng(0).normal(size=(reference.shape[1], 8))
    return ((pooled - reference.mean(0)) / (reference.std(0) + 1e-6)) @ directions > 0


def test_default_int8_agrees_where_plain_dynamic_does_not(outlier_encoder) -> None:
    """The regression guard: the default int8 (token-scaled, exclude=auto measured on CALIBRATION)
    keeps >= 99 % of the probe's decisions on TEXTS; plain dynamic quantization (one activation
    scale per tensor, nothing excluded) does not on this encoder (122/128 measured)."""
    model, tokenizer, folder = outlier_encoder
    probe = Calibration.from_texts(tokenizer, TEXTS)
    reference = pooled_outputs(torch_runner(model), probe)
    default = Int8Settings()
    calibration = Calibration.from_texts(tokenizer, CALIBRATION)
    runners = {"default": variant_runner("int8", model, folder, int8=default, calibration=calibration)[0],
               "plain": variant_runner("int8", model, folder, int8=Int8Settings(token_scale=(), exclude=()))[0]}
    pooled = {name: pooled_outputs(runner, probe) for name, runner in runners.items()}
    agreement = {name: float((_probe_decisions(p, reference) == _probe_decisions(reference, reference)).mean())
                 for name, p in pooled.items()}
    assert agreement["default"] >= 0.99, agreement
    assert agreement["plain"] <= 0.96, agreement  # the setup tells the two apart
    assert pooled_error(reference, pooled["default"]) < 0.5 * pooled_error(reference, pooled["plain"])
    # The sensitivity measurement found the layer with the outlier input.
    assert read_record(int8_graph(model, folder, default, calibration))["excluded"] == ["0.ffn_out"]


def test_auto_graph_is_reused_for_the_layers_it_chose(outlier_encoder, monkeypatch) -> None:
    """What task=bundle builds with exclude=auto is what serving then asks for with the recorded
    layers (serving.quantize.with_recorded_layers): one quantization, not two."""
    model, tokenizer, folder = outlier_encoder
    record = int8_record(model, tokenizer, folder, 1, Int8Settings(), CALIBRATION)
    chosen = replace(Int8Settings(), exclude=tuple(record["excluded"]))
    monkeypatch.setattr(variants, "quantize_int8", lambda *args: pytest.fail("quantized again"))
    graph = int8_graph(model, folder, chosen)
    assert read_record(graph) == {"settings": chosen.effective(), "excluded": record["excluded"]}
    auto = int8_graph(model, folder, Int8Settings(), Calibration.from_texts(tokenizer, CALIBRATION))
    assert graph.read_bytes() == auto.read_bytes() and read_record(auto) == record


def _nodes(graph: Path) -> list:
    return list(onnx.load(str(graph), load_external_data=False).graph.node)


def _initializers(graph: Path) -> dict[str, np.ndarray]:
    return {init.name: onnx.numpy_helper.to_array(init) for init in onnx.load(str(graph)).graph.initializer}


def _layers(graph: Path) -> list[MatMulLayer]:
    return graph_layers(onnx.load(str(graph), load_external_data=False).graph)


def test_layers_are_named_by_block_and_role(encoder) -> None:
    """One BERT layer: Q, K, V read one tensor (in that order); the FFN's two MatMuls sit around
    the GELU. Each label's weight is the PyTorch layer's, transposed."""
    model, _, folder = encoder
    graph = onnx_graph(model, folder)
    layers = _layers(graph)
    assert [layer.label for layer in layers] == ["0.q", "0.k", "0.v", "0.attn_out", "0.ffn_in", "0.ffn_out"]
    assert [layer.role for layer in layers] == ["qkv", "qkv", "qkv", "attn_out", "ffn_in", "ffn_out"]
    block = model.encoder.layer[0]
    torch_layers = {"q": block.attention.self.query, "k": block.attention.self.key, "v": block.attention.self.value,
                    "attn_out": block.attention.output.dense, "ffn_in": block.intermediate.dense,
                    "ffn_out": block.output.dense}
    weights = _initializers(graph)
    nodes = {node.name: node for node in _nodes(graph)}
    for layer in layers:
        expected = torch_layers[layer.name].weight.detach().numpy().T
        np.testing.assert_array_equal(weights[nodes[layer.node].input[1]], expected)
        assert (layer.in_features, layer.out_features) == expected.shape
    assert [layer.label for layer in select_layers(layers, ("ffn_out", "0.v"))] == ["0.v", "0.ffn_out"]


def test_token_scaling_is_exact_in_fp32(encoder) -> None:
    """(x / r) @ W * r with r each token's largest |x|: the fp32 graph computes the same function,
    and the q, k, v projections share one scaled input."""
    model, tokenizer, folder = encoder
    graph = onnx_graph(model, folder)
    layers = _layers(graph)
    scaled = token_scale(onnx.load(str(graph)), {layer.node for layer in layers})
    path = folder / "token_scaled" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(scaled, str(path), save_as_external_data=True, location="model.onnx.data")
    added = [node.op_type for node in scaled.graph.node if node.name.startswith("token_scale/")]
    # Four inputs are scaled (the LayerNorm before q/k/v, the attention's context, the LayerNorm
    # before the FFN, the GELU output) and six products multiplied back.
    assert added == ["Abs", "ReduceMax", "Max", "Div"] * 4
    assert sum(node.name.endswith("/token_scale") and node.op_type == "Mul" for node in scaled.graph.node) == 6
    batch = _batch(tokenizer, TEXTS)
    mask = batch["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(onnx_session_runner(path, 1)(batch)[mask], torch_runner(model)(batch)[mask], atol=1e-5)


def test_int8_settings_change_the_graph_and_the_cache_key(encoder) -> None:
    model, tokenizer, folder = encoder
    block = Int8Settings(method="blockwise", block_size=16, exclude=())
    dynamic = Int8Settings(method="dynamic", per_channel=False, reduce_range=False, token_scale=(), exclude=())
    per_channel = Int8Settings(method="dynamic", per_channel=True, reduce_range=True, token_scale=(), exclude=())
    kept_ffn = Int8Settings(method="dynamic", per_channel=True, reduce_range=True, token_scale=(), exclude=("ffn_out",),
                            excluded_as="fp32")
    settings = (block, dynamic, per_channel, kept_ffn)
    # Each setting is its own cache entry; a knob the method does not use changes nothing.
    assert len({s.key() for s in settings}) == 4
    assert Int8Settings(method="blockwise", block_size=16, exclude=(), per_channel=False).key() == block.key()
    graphs = {s: int8_graph(model, folder, s) for s in settings}
    assert len({g.parent for g in graphs.values()}) == 4
    assert read_record(graphs[kept_ffn])["excluded"] == ["0.ffn_out"] and read_record(graphs[dynamic])["excluded"] == []

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
    # exclude=ffn_out as fp32: the MatMul after the GELU stays fp32, the other five are quantized.
    nodes = _nodes(graphs[kept_ffn])
    produced_by = {out: n.op_type for n in nodes for out in n.output}
    assert sum(n.op_type == "MatMulInteger" for n in nodes) == 5
    assert any(n.op_type == "MatMul" and produced_by.get(n.input[0]) == "Gelu" for n in nodes)
    # ... and as block-wise (the default for excluded layers), with the others token-scaled.
    mixed = Int8Settings(reduce_range=False, exclude=("0.ffn_out", "0.v"))
    ops = [n.op_type for n in _nodes(int8_graph(model, folder, mixed))]
    assert ops.count("MatMulNBits") == 2 and ops.count("MatMulInteger") == 4 and ops.count("Abs") == 1

    # Every setting stays close to fp32 on a padded batch.
    batch = _batch(tokenizer, TEXTS)
    mask = batch["attention_mask"].numpy().astype(bool)
    reference = torch_runner(model)(batch)
    for s in settings:
        runner, _ = variant_runner("int8", model, folder, 1, s)
        assert 0.0 < np.abs(runner(batch) - reference)[mask].max() < 0.25, s


def test_int8_settings_validate_and_match_the_config_group(tmp_path: Path, monkeypatch) -> None:
    group = yaml.safe_load((Path(__file__).parents[1] / "conf" / "int8" / "default.yaml").read_text())
    assert Int8Settings.from_config(group) == Int8Settings()
    assert Int8Settings().exclude == ("auto",) and Int8Settings.from_config({"exclude": "auto"}).auto
    assert Int8Settings.from_config({"method": "dynamic", "exclude": ["ffn_out", "2.v"]}).exclude == ("ffn_out", "2.v")
    with pytest.raises(ConfigError, match="int8.method='fp16'"):
        Int8Settings(method="fp16")
    with pytest.raises(ConfigError, match=r"unknown MatMul role\(s\) or label\(s\) \['2.value', 'attention'\]"):
        Int8Settings(exclude=("attention", "2.value"))
    with pytest.raises(ConfigError, match="'auto' chooses the layers itself"):
        Int8Settings(exclude=("auto", "ffn_out"))
    with pytest.raises(ConfigError, match=r"int8.token_scale: unknown layer name\(s\) \['qkv'\]"):
        Int8Settings(token_scale=("qkv",))
    with pytest.raises(ConfigError, match="power of two"):
        Int8Settings(block_size=24)
    with pytest.raises(ConfigError, match="int8.excluded_as='fp16'"):
        Int8Settings(excluded_as="fp16")
    with pytest.raises(ConfigError, match="unknown int8 setting"):
        Int8Settings.from_config({"bits": 4})
    # reduce_range=None follows the CPU: 7-bit weights only without VNNI/AMX.
    assert Int8Settings(reduce_range=True).effective()["reduce_range"] is True
    for name, flags, seven_bit in (("avx2", "fpu avx2 fma", True), ("vnni", "avx2 avx512f avx512_vnni", False),
                                   ("amx", "avx2 amx_tile amx_int8", False)):
        (tmp_path / name).write_text(f"processor\t: 0\nflags\t\t: {flags}\n\n")
        monkeypatch.setattr(cpu, "CPUINFO", tmp_path / name)
        assert Int8Settings().effective()["reduce_range"] is seven_bit, name


def test_stale_export_format_is_exported_again(tmp_path: Path, monkeypatch) -> None:
    """An fp32 entry written by an older export_onnx (no format, or another one) is exported again."""
    exports: list[Path] = []
    monkeypatch.setattr(variants, "export_onnx", lambda model, path: exports.append(path) or path.write_text("new"))
    entry = tmp_path / "onnx"
    entry.mkdir()
    (entry / "model.onnx").write_text("old")
    assert onnx_graph(torch.nn.Identity(), tmp_path).read_text() == "new" and len(exports) == 1
    assert onnx_graph(torch.nn.Identity(), tmp_path).read_text() == "new" and len(exports) == 1  # current: reused


def test_int8_key_ignores_the_order_layers_are_named_in() -> None:
    assert Int8Settings(exclude=("qkv", "ffn_out")).key() == Int8Settings(exclude=("ffn_out", "qkv")).key()
    # Labels in graph order (as int8.json records them), after roles.
    named = Int8Settings(exclude=("10.q", "1.ffn_out", "ffn_in", "1.v"))
    assert named.effective()["exclude"] == ["ffn_in", "1.v", "1.ffn_out", "10.q"]


def test_cpu_flags_are_read_once_per_cpuinfo(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text("flags\t\t: avx2 avx512_vnni\n")
    monkeypatch.setattr(cpu, "CPUINFO", path)
    reads: list[Path | None] = []
    flags = cpu.cpu_flags
    monkeypatch.setattr(cpu, "cpu_flags", lambda cpuinfo=None: reads.append(cpuinfo) or flags(cpuinfo))
    assert [Int8Settings().weights_7bit for _ in range(3)] == [False] * 3 and has_int8_dot_products()
    assert reads == [path]


def test_auto_needs_calibration_texts_before_any_export(encoder, tmp_path: Path) -> None:
    model, _, _ = encoder
    with pytest.raises(ConfigError, match="int8.exclude=auto measures each layer on held-out in-domain text"):
        int8_graph(model, tmp_path / "variants")
    assert not (tmp_path / "variants").exists()


def _layer(block: int, name: str, macs: tuple[int, int] = (4, 4)) -> MatMulLayer:
    role = "qkv" if name in "qkv" else name
    return MatMulLayer(f"n{block}{name}", block, role, name, *macs)


def test_auto_moves_the_largest_error_per_multiply_add_within_the_share() -> None:
    """Hand-made sensitivities: q, k, v, attn_out cost 16 multiply-adds each, the FFN's 64 (192 in all)."""
    layers = [_layer(0, "q"), _layer(0, "k"), _layer(0, "v"), _layer(0, "attn_out"),
              _layer(0, "ffn_in", (4, 16)), _layer(0, "ffn_out", (16, 4))]
    sensitivity = {"0.q": 0.001, "0.k": 0.002, "0.v": 0.04, "0.attn_out": 0.01, "0.ffn_in": 0.03, "0.ffn_out": 0.1}
    # error^2 per multiply-add: ffn_out 1.6e-4, v 1e-4, ffn_in 1.4e-5, then attn_out, k, q, whose
    # error^2 is under 1 % of the sum (1.26e-4): never moved.
    assert choose_exclusions(layers, sensitivity, 0.34) == ["0.ffn_out"]  # 64 of 65.3; v would make 80
    assert choose_exclusions(layers, sensitivity, 0.3) == ["0.v"]  # ffn_out (64) exceeds 57.6; v fits
    assert choose_exclusions(layers, sensitivity, 0.5) == ["0.v", "0.ffn_out"]  # 80 of 96 (graph order)
    assert choose_exclusions(layers, sensitivity, 1.0) == ["0.v", "0.ffn_in", "0.ffn_out"]
    assert choose_exclusions(layers, sensitivity, 0.0) == []


def test_a_negligible_layer_does_not_stop_the_choice() -> None:
    """q ranks second per multiply-add but is negligible (0.8 % of the squared error): skipped, and
    0.ffn_out (2.8 %), ranked after it, still fits the share."""
    layers = [_layer(0, "q"), _layer(0, "ffn_out", (16, 4)), _layer(1, "ffn_out", (16, 4))]
    sensitivity = {"0.q": 0.09, "0.ffn_out": 0.17, "1.ffn_out": 1.0}
    assert choose_exclusions(layers, sensitivity, 0.9) == ["0.ffn_out", "1.ffn_out"]


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
