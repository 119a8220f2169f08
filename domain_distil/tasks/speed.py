"""``python run.py task=speed``: Table 5, size and ms per message on one CPU thread, batch size 1,
plus the tokenizer coverage of every encoder whose tokenizer differs from the first encoder's.

    python run.py task=speed 'speed.encoders=[{id: mBERT, name_or_path: bert-base-multilingual-cased},
        {id: TD-DistilmBERT, name_or_path: outputs/td/student}]' 'speed.variants.encoders=[TD-DistilmBERT]'
    python run.py task=speed speed.realistic.texts=data/cc/eng.jsonl speed.repeats=50

Writes speed.md, speed.json and the ONNX exports (onnx/<id>/onnx/model.onnx, onnx/<id>/int8-<settings key>/model.onnx) to
``paths.output_dir``; ``domain_distil/stages/speed.py`` does the work.
For comparable numbers, run it on an otherwise idle machine.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from domain_distil.stages.speed import measure, speed_request


def run(cfg: DictConfig) -> dict[str, Any]:
    return measure(speed_request(cfg))
