"""Does standardising the head's input tokens help? Frozen heads with and without, on the demo tasks.

The self-attention head can standardise its input tokens (per-dimension mean and std of the
training tokens, ``head.standardize_inputs``) before attending and pooling; the paper's head pools
the raw vectors. This benchmark trains frozen classifiers on the demo teacher (multilingual-e5-small,
``teacher=me5_small``) for both demo tasks, with the demo's classifier settings
(``demo.classify`` in ``conf/experiment/demo.yaml``), once with the setting off and once on, over
a few seeds, and prints test F1 (mean ± std over seeds) and the ratio on / off.

The data are the demo generator's (``domain_distil/demo/data/generator.py``, English only);
the encoder's token outputs are computed once into the feature cache, so a rerun only trains heads.

    python benchmarks/head_standardisation.py                    # 500/150/300 rows, 3 seeds (~4 min CPU)
    python benchmarks/head_standardisation.py --seeds 5 --train 1000

The last lines are one per task: ``<task>: off F1 ..., on F1 ..., ratio on/off ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModel, AutoTokenizer

from datamodules.task import TaskDataModule
from domain_distil.classification.features import FeatureCache
from domain_distil.classification.metrics import tune_threshold
from domain_distil.classification.taskfile import TaskSpec, load_task
from domain_distil.common.configs import config_dir
from domain_distil.common.hashing import memoised_model_hash
from domain_distil.demo.data.generator import generate_demo_data
from domain_distil.demo.teachers.me5 import prepare_me5_small
from domain_distil.modeling.teachers import pooler_free_kwargs, quiet_load_report
from lightning_modules.classifier import ClassifierModule

TASKS = ("cc_intent", "td_tags")


def demo_classify_config(task: str) -> DictConfig:
    """The demo's settings for ``task``: ``classify`` and ``cls_task`` as the demo runs them, ``head`` as configured."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=demo"])
    return OmegaConf.create({"classify": cfg.demo.classify, "cls_task": cfg.demo.task_configs[task],
                             "head": cfg.head})


def train_and_test(cfg: DictConfig, splits, cache: FeatureCache, seed: int, standardize: bool,
                   work_dir: Path) -> float:
    """Test F1 of one frozen head (best validation checkpoint, threshold as the task config says)."""
    spec = splits.spec
    L.seed_everything(seed, verbose=False)
    datamodule = TaskDataModule(splits, int(cfg.classify.batch_size), features=cache.get)
    datamodule.setup("fit")
    head = instantiate(cfg.head, input_dim=datamodule.datasets["train"].store.dim, num_classes=spec.num_outputs,
                       standardize_inputs=standardize)
    tune = spec.threshold == "tune"
    module = ClassifierModule(
        head=head, task_type=spec.type, num_labels=len(spec.labels) if spec.type == "multilabel" else 2,
        optimizer=instantiate(cfg.classify.optimizer), scheduler=instantiate(cfg.classify.scheduler),
        penalty_coef=float(cfg.classify.penalty_coef), warmup_prop=float(cfg.classify.warmup_prop),
        threshold=0.5 if tune else float(spec.threshold), tune_threshold=tune, threshold_mode=spec.threshold_mode,
    )
    checkpoint = ModelCheckpoint(dirpath=work_dir, monitor="val/f1", mode="max", save_top_k=1)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=int(cfg.classify.trainer.max_epochs),
                        gradient_clip_val=float(cfg.classify.trainer.gradient_clip_val), num_sanity_val_steps=0,
                        logger=False, callbacks=[checkpoint], enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True)
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path
    if tune:
        outputs = trainer.predict(module, datamodule=datamodule, ckpt_path=best)  # validation split
        probs = torch.cat([o["probs"] for o in outputs])
        targets = torch.cat([o["targets"] for o in outputs])
        module.threshold, _ = tune_threshold(probs, targets, spec.type, mode=spec.threshold_mode)
    result = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    Path(best).unlink(missing_ok=True)
    return float(result["test/f1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--val", type=int, default=150)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--cache-dir", default=os.environ.get("DOMAIN_DISTIL_CACHE", "cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    cache_dir = Path(args.cache_dir).resolve()
    data_dir = cache_dir / "benchmarks" / f"head_std_data_{args.train}_{args.val}_{args.test}"
    generate_demo_data(data_dir, seed=0, languages=["eng"], corpus_mb_per_lang=0.01, n_train=args.train,
                       n_val=args.val, n_test=args.test, label_noise=0.1)
    teacher_dir = prepare_me5_small(cache_dir)

    def load() -> tuple[torch.nn.Module, object]:
        config = AutoConfig.from_pretrained(teacher_dir)
        with quiet_load_report():
            model = AutoModel.from_pretrained(teacher_dir, **pooler_free_kwargs(config))
        return model.eval(), AutoTokenizer.from_pretrained(teacher_dir)

    numbers: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for task in TASKS:
        cfg = demo_classify_config(task)
        spec = TaskSpec.from_config(cfg.cls_task)
        splits = load_task(spec, "eng", [data_dir / "tasks" / f"{task}.jsonl"])
        cache = FeatureCache(cache_dir / "features", memoised_model_hash(teacher_dir, cache_dir), spec.max_length,
                             load, dtype=str(cfg.classify.feature_dtype))
        numbers[task] = {"off": [], "on": []}
        for seed in range(args.seeds):
            for setting, standardize in (("off", False), ("on", True)):
                f1 = train_and_test(cfg, splits, cache, seed, standardize, cache_dir / "benchmarks" / "ckpt")
                numbers[task][setting].append(f1)
                print(f"{task} seed {seed} standardize_inputs={standardize}: test F1 {f1:.4f}", flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s (teacher me5_small, eng, "
          f"{args.train}/{args.val}/{args.test} rows, {args.seeds} seeds)")
    for task, by_setting in numbers.items():
        off, on = statistics.mean(by_setting["off"]), statistics.mean(by_setting["on"])
        spread = {k: statistics.pstdev(v) for k, v in by_setting.items()}
        print(f"{task}: off F1 {off:.4f} ± {spread['off']:.4f}, on F1 {on:.4f} ± {spread['on']:.4f}, "
              f"ratio on/off {on / off if off else float('inf'):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
    main()
