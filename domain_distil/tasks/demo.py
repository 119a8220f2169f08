"""task=demo, the default of ``python run.py``: the paper's protocol in miniature, offline, on CPU
(docs/demo.md). This module makes the data and names the students; ``stages/protocol.py`` runs the
rest. Under ``-m`` each job runs only the classification of its own seed and language.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from domain_distil.classification.taskfile import TaskSpec, load_examples
from domain_distil.common.hashing import hash_object, short
from domain_distil.common.io import atomic_open
from domain_distil.stages.protocol import DOMAIN, GENERAL, TRIMMED, demo_task_config, run_protocol


def run(cfg: DictConfig) -> dict[str, Any]:
    data_dir = demo_data(cfg.demo.data, Path(cfg.paths.cache_dir))
    corpora = {GENERAL: data_dir / "general", DOMAIN: data_dir / "in_domain"}
    overrides: dict[str, dict[str, Any]] = {}
    if cfg.demo.trimmed_student:
        # The in-domain student again, with the vocabulary trimmed to what its corpus and the tasks'
        # training texts use (student.vocab=trim): the same recipe, a quarter of the parameters.
        corpora[TRIMMED] = data_dir / "in_domain"
        overrides[TRIMMED] = {"vocab": "trim", "vocab_extra_texts": [str(training_texts(cfg, data_dir))]}
    return run_protocol(cfg, data_dir, corpora, name="demo", with_speed=True, student_overrides=overrides)


def training_texts(cfg: DictConfig, data_dir: Path) -> Path:
    """The texts of the tasks' ``train`` rows (every language) as one JSONL file, for a trimmed
    student's vocabulary: no validation or test text decides which tokens are kept."""
    path = data_dir / "vocab_extra" / "train_texts.jsonl"
    rows = []
    for task in cfg.demo.tasks:
        task_cfg = demo_task_config(cfg, data_dir, str(task))
        for example in load_examples(task_cfg.files, TaskSpec.from_config(task_cfg)):
            if example.split == "train":
                rows.append(json.dumps({"text": example.text}, ensure_ascii=False))
    text = "\n".join(rows) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged: keep its mtime
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as handle:
            handle.write(text)
    return path


def demo_data(settings: DictConfig, cache_dir: Path) -> Path:
    """Generate (or reuse) the demo data; the folder is named by the generator settings."""
    from domain_distil.demo.data.generator import generate_demo_data

    values = OmegaConf.to_container(settings, resolve=True)
    out = cache_dir / "demo_data" / short(hash_object(values), 12)
    seed = values.pop("seed")
    generate_demo_data(out, seed, **values)
    return out
