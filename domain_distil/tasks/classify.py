"""``task=classify``: train and test one self-attention classifier for one (task, language, seed);
``stages/classify.py`` does the work."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from domain_distil.stages.classify import classify, classify_job


def run(cfg: DictConfig) -> dict[str, Any]:
    return classify(classify_job(cfg)).record
