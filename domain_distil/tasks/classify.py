"""``task=classify``: train and test one self-attention classifier for one (task, language, seed).

    python run.py task=classify cls_task=cc_intent lang=esp encoder=distilled
    python run.py task=classify encoder=teacher encoder.freeze=false          # fine-tune mBERT
    python run.py -m task=classify seed=range(10) lang=eng,esp,jap,por,rus    # Table 8 sweep

``domain_distil/stages/classify.py`` turns the config into a typed ``ClassifyJob``
(``classify_job``) and does the work.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from domain_distil.stages.classify import ClassifyResult, classify, classify_job


def run(cfg: DictConfig) -> dict[str, Any]:
    result: ClassifyResult = classify(classify_job(cfg))
    return result.record
