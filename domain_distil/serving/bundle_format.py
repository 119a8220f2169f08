"""A serving bundle's format (docs/formats.md "Serving bundle"): one frozen encoder, N heads trained on
it, one manifest. What ``bundle_build`` (writes) and ``bundle_load`` (reads) agree on: file names,
the format version, the head record (:class:`HeadSpec`) and which head classes a manifest may name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from domain_distil.common.errors import UserInputError

FORMAT_VERSION = 1
HEAD_WEIGHTS = "head.safetensors"
HEAD_META = "head.json"
# A manifest names the head class it instantiates; only heads from this package may be built from a
# bundle, so a tampered manifest cannot make the loader import arbitrary code.
ALLOWED_HEAD_MODULES = ("domain_distil.modeling.heads",)
# Bundles written before the package move name the head by its old top-level module.
_RENAMED_HEAD_MODULES = {"modeling.heads": "domain_distil.modeling.heads"}


class BundleError(UserInputError):
    """A bundle (or a head going into one) is inconsistent; the message says what and where."""


@dataclass
class HeadSpec:
    """One trained head: where it came from, what it predicts and its weights."""

    task: str
    lang: str
    task_type: str  # binary | multilabel
    labels: list[str]
    positive_label: str | None
    threshold: float | list[float]  # one for every label, or one per label (threshold_mode=per_label)
    max_length: int
    head_config: dict[str, Any]  # the job's `head` group: _target_ and sizes
    input_dim: int
    num_classes: int
    encoder_hash: str
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source: dict[str, Any] = field(default_factory=dict)  # job folder, seed, scores

    @property
    def key(self) -> str:
        return f"{self.task}/{self.lang}"

    def meta(self) -> dict[str, Any]:
        """``head.json``: every field but the weights, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state_dict"}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], state_dict: dict[str, torch.Tensor]) -> HeadSpec:
        return cls(state_dict=state_dict, **{f.name: meta[f.name] for f in fields(cls) if f.name != "state_dict"})

    def build(self) -> nn.Module:
        """The head module with its trained weights, in eval mode (dropout off)."""
        head = build_head(self.head_config, self.input_dim, self.num_classes)
        head.load_state_dict(self.state_dict, strict=True)
        return head.eval().requires_grad_(False)


def build_head(head_config: Mapping[str, Any], input_dim: int, num_classes: int) -> nn.Module:
    target = str(head_config.get("_target_", ""))
    module_name, _, class_name = target.rpartition(".")
    module_name = _RENAMED_HEAD_MODULES.get(module_name, module_name)
    if module_name not in ALLOWED_HEAD_MODULES:
        raise BundleError(f"head _target_ {target!r} is not allowed; heads must come from {ALLOWED_HEAD_MODULES}")
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = {k: v for k, v in head_config.items() if not k.startswith("_")}
    return cls(input_dim=input_dim, num_classes=num_classes, **kwargs)
