"""``task=speed``: Table 5, size and ms per message on one CPU thread at batch size 1, plus tokenizer
coverage; ``stages/speed.py`` does the work. For comparable numbers, run it on an idle machine."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from domain_distil.stages.speed import measure, speed_request


def run(cfg: DictConfig) -> dict[str, Any]:
    return measure(speed_request(cfg))
