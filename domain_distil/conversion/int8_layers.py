"""The weight MatMuls of an exported encoder graph, named by block and role, and the per-token
activation scaling that the int8 variant puts around the ones it quantizes dynamically.

Names come from the graph's structure, not the exporter's node names, so they work on any
BERT-shaped export: a block ends at each FFN output, and the three projections that read one tensor
are ``q``, ``k``, ``v`` in the order the model computes them (``tests/test_conversion.py`` checks it
against the PyTorch weights). A *label* is ``<block>.<name>``, e.g. ``2.ffn_out``.

Why token scaling (docs/serving.md, "Where int8 loses agreement"): dynamic quantization gives a
whole activation tensor one scale, and the first token's outlier activations (75-170x the RMS) set
the step for every other token; scaling each token's row by its own maximum and back is exact.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

ROLES = ("qkv", "attn_out", "ffn_in", "ffn_out")
# What a label's second part may be: the three attention projections are told apart.
LAYER_NAMES = ("q", "k", "v", "attn_out", "ffn_in", "ffn_out")
_QKV_NAMES = ("q", "k", "v")
# A row of zeros (never seen in practice) must not divide by zero.
_MIN_ROW_MAX = 1e-6


@dataclass(frozen=True)
class MatMulLayer:
    """One weight MatMul of the graph."""

    node: str  # the ONNX node name
    block: int  # 0-based transformer block
    role: str  # one of ROLES
    name: str  # one of LAYER_NAMES
    in_features: int
    out_features: int

    @property
    def label(self) -> str:
        return f"{self.block}.{self.name}"

    @property
    def macs_per_token(self) -> int:
        """Multiply-adds per token: what the layer costs relative to the others."""
        return self.in_features * self.out_features


def _role(node: Any, producer: dict[str, Any], consumers: dict[str, list[Any]], readers: int) -> str:
    source = producer.get(node.input[0])
    if source is not None and source.op_type == "Gelu":
        return "ffn_out"
    # The bias Add sits between a projection and its GELU: look two nodes ahead.
    frontier, ahead = [node], []
    for _ in range(2):
        frontier = [c for n in frontier for out in n.output for c in consumers.get(out, [])]
        ahead += frontier
    if any(n.op_type == "Gelu" for n in ahead):
        return "ffn_in"
    return "qkv" if readers >= 3 else "attn_out"


def graph_layers(graph: Any) -> list[MatMulLayer]:
    """The weight MatMuls of an ``onnx.GraphProto``, in graph order (weights need not be loaded)."""
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights]
    readers = Counter(node.input[0] for node in matmuls)
    layers, block, seen_qkv = [], 0, 0
    for node in matmuls:
        role = _role(node, producer, consumers, readers[node.input[0]])
        name = role
        if role == "qkv":
            name, seen_qkv = _QKV_NAMES[min(seen_qkv, 2)], seen_qkv + 1
        rows, cols = weights[node.input[1]]
        layers.append(MatMulLayer(node.name, block, role, name, int(rows), int(cols)))
        if role == "ffn_out":
            block, seen_qkv = block + 1, 0
    return layers


def select_layers(layers: list[MatMulLayer], wanted: tuple[str, ...]) -> list[MatMulLayer]:
    """The layers named by roles (``ffn_out``: every block's) or labels (``2.ffn_out``, ``0.v``)."""
    return [layer for layer in layers if layer.role in wanted or layer.label in wanted]


def token_scale(model: Any, nodes: set[str]) -> Any:
    """``model`` (an ``onnx.ModelProto``, changed in place and returned) with every MatMul in
    ``nodes`` computing ``(x / r) @ W * r``, where ``r`` is each token's (row's) largest absolute
    activation: exact in real numbers, and the quantizer then sees rows of the same range.

    Projections that read one tensor (q, k, v) share one ``x / r``.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    opset = next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))
    graph.initializer.extend([
        numpy_helper.from_array(np.array(_MIN_ROW_MAX, dtype=np.float32), "token_scale/min"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "token_scale/last_axis")])
    scaled: dict[str, tuple[str, str]] = {}  # activation -> (x / r, r)
    ordered = []
    for node in graph.node:
        if node.name not in nodes:
            ordered.append(node)
            continue
        source = node.input[0]
        if source not in scaled:
            prefix = f"token_scale/{len(scaled)}"
            row_max = f"{prefix}/row_max"
            reduce = (helper.make_node("ReduceMax", [f"{prefix}/abs", "token_scale/last_axis"], [f"{prefix}/max"],
                                       name=f"{prefix}/ReduceMax", keepdims=1) if opset >= 18 else
                      helper.make_node("ReduceMax", [f"{prefix}/abs"], [f"{prefix}/max"], name=f"{prefix}/ReduceMax",
                                       axes=[-1], keepdims=1))
            ordered += [helper.make_node("Abs", [source], [f"{prefix}/abs"], name=f"{prefix}/Abs"), reduce,
                        helper.make_node("Max", [f"{prefix}/max", "token_scale/min"], [row_max], name=f"{prefix}/Max"),
                        helper.make_node("Div", [source, row_max], [f"{prefix}/scaled"], name=f"{prefix}/Div")]
            scaled[source] = (f"{prefix}/scaled", row_max)
        scaled_input, row_max = scaled[source]
        product = node.output[0]
        node.input[0] = scaled_input
        node.output[0] = f"{product}/token_scaled"
        ordered += [node, helper.make_node("Mul", [node.output[0], row_max], [product], name=f"{node.name}/token_scale")]
    del graph.node[:]
    graph.node.extend(ordered)
    return model
