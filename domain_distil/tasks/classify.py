"""``task=classify``: train and test one self-attention classifier for one (task, language, seed).

    python run.py task=classify cls_task=cc_intent lang=esp encoder=distilled
    python run.py task=classify encoder=teacher encoder.freeze=false          # fine-tune mBERT
    python run.py -m task=classify seed=range(10) lang=eng,esp,jap,por,rus    # Table 8 sweep

Order of work: validate the task files (fails in seconds, before any model is read), resolve the
encoder (may distil, for ``encoder=distilled``), get features (cache) or token ids, train with the
best checkpoint chosen on validation F1, optionally tune the threshold on validation, test with the
best checkpoint, write ``results.json``. A failing job still writes ``results.json`` with
``status: failed`` and the error, then re-raises; W&B is closed in ``finally`` either way.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from datamodules.task import TaskDataModule
from domain_distil.classification.encoders import EncoderRef, load_encoder, resolve_encoder
from domain_distil.classification.features import FeatureCache
from domain_distil.classification.metrics import tune_threshold
from domain_distil.classification.results import RESULTS_FILE, build_results, write_results
from domain_distil.classification.taskfile import TaskSpec, load_task
from domain_distil.common.io import read_json
from domain_distil.common.loggers import build_loggers, finish_wandb, log_config, sweep_group, to_container
from domain_distil.tasks._common import seed_everything
from lightning_modules.classifier import ClassifierModule

log = logging.getLogger(__name__)


def _feature_device(trainer_cfg: DictConfig) -> str:
    wants_gpu = str(trainer_cfg.get("accelerator", "cpu")) in ("gpu", "cuda", "auto")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def _metrics(values: dict[str, Any], prefix: str) -> dict[str, float]:
    # torchmetrics computes in float32, so a perfect recall can come back as 1.0000001: keep the
    # six digits float32 actually carries.
    return {name: round(float(values[f"{prefix}/{name}"]), 6) for name in ("f1", "precision", "recall")}


def save_head(module: ClassifierModule, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.head.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def _tune(trainer: L.Trainer, module: ClassifierModule, datamodule: TaskDataModule, ckpt: str,
          task_type: str) -> tuple[float, float]:
    """Threshold with the best validation F1 for the best checkpoint; sets it on the module."""
    outputs = trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt)
    probs = torch.cat([o["probs"] for o in outputs])
    targets = torch.cat([o["targets"] for o in outputs])
    threshold, f1 = tune_threshold(probs, targets, task_type)
    module.threshold = threshold
    log.info("tuned threshold %.2f (validation F1 %.4f)", threshold, f1)
    return threshold, f1


def _finished_record(output_dir: Path, config: dict[str, Any], data_hash: str) -> dict[str, Any] | None:
    """The ``results.json`` of a finished run of this exact config and data in ``output_dir``, if any.

    Re-running a killed sweep into its folder (``hydra.sweep.dir=<old sweep>``) then only runs the
    jobs that are missing or failed.
    """
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return None
    same = record.get("config") == config and record.get("data_hash") == data_hash
    return record if record.get("status") == "ok" and same else None


def run(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {}
    lang = str(cfg.lang.name)
    freeze = bool(cfg.encoder.freeze)
    timings: dict[str, float] = {}
    encoder_info: dict[str, Any] = {"id": str(cfg.encoder.id), "name_or_path": cfg.encoder.get("name_or_path"),
                                    "hash": None}
    failed = True
    try:
        config = to_container(cfg)
        ccfg = cfg.classify
        spec = TaskSpec.from_config(cfg.cls_task)
        splits = load_task(spec, lang, cfg.cls_task.get("files"), cfg.cls_task.get("dir"))
        data_hash = splits.content_hash()
        log.info("%s/%s splits: %s", spec.name, lang, splits.counts())
        done = _finished_record(output_dir, config, data_hash) if ccfg.get("skip_finished", True) else None
        if done is not None:
            log.info("%s already holds a finished job with this config and data: skipping", output_dir)
            failed = False
            return done
        seed_everything(cfg.seed)

        t0 = time.perf_counter()
        ref: EncoderRef = resolve_encoder(cfg)
        encoder_info = {"id": ref.id, "name_or_path": ref.name_or_path, "hash": ref.hash}
        timings["resolve_encoder_s"] = time.perf_counter() - t0

        loaded: dict[str, Any] = {}

        def loader() -> tuple[Any, Any]:
            if not loaded:
                t = time.perf_counter()
                loaded["model"], loaded["tokenizer"] = load_encoder(ref)
                timings["load_encoder_s"] = time.perf_counter() - t
            return loaded["model"], loaded["tokenizer"]

        t0 = time.perf_counter()
        cache: FeatureCache | None = None
        if freeze and ccfg.feature_cache:
            cache = FeatureCache(Path(cfg.paths.cache_dir) / "features", ref.hash, spec.max_length, loader,
                                 dtype=str(ccfg.feature_dtype), batch_size=int(ccfg.encode_batch_size),
                                 device=_feature_device(cfg.trainer))
            datamodule = TaskDataModule(splits, int(ccfg.batch_size), features=cache.get,
                                        num_workers=int(ccfg.num_workers))
            datamodule.setup("fit")  # encodes every split on a cache miss, loads it otherwise
            encoder, hidden_size = None, datamodule.datasets["train"].store.dim
        else:
            encoder, tokenizer = loader()
            datamodule = TaskDataModule(splits, int(ccfg.batch_size), tokenizer=tokenizer,
                                        max_length=spec.max_length, num_workers=int(ccfg.num_workers))
            hidden_size = int(encoder.config.hidden_size)
        timings["features_s"] = time.perf_counter() - t0

        # Seed again here: loading the encoder (a cache miss) draws random numbers (e.g. an
        # uninitialised pooler), so without this a hit and a miss would train differently.
        seed_everything(cfg.seed)
        head = instantiate(cfg.head, input_dim=hidden_size, num_classes=spec.num_outputs)
        module = ClassifierModule(
            head=head,
            task_type=spec.type,
            num_labels=len(spec.labels) if spec.type == "multilabel" else 2,
            optimizer=instantiate(ccfg.optimizer),
            scheduler=instantiate(ccfg.scheduler) if ccfg.get("scheduler") else None,
            encoder=encoder,
            freeze=freeze,
            encoder_lr=float(ccfg.encoder_lr),
            penalty_coef=float(ccfg.penalty_coef),
            warmup_prop=float(ccfg.warmup_prop),
            threshold=0.5 if spec.threshold == "tune" else float(spec.threshold),
            tune_threshold=spec.threshold == "tune",
        )

        mode = "frozen" if freeze else "finetuned"
        loggers = build_loggers(
            cfg.get("logger"),
            name=f"{spec.name}-{lang}-{ref.id}-{mode}-seed{cfg.seed}",
            group=sweep_group(str(cfg.task), output_dir),
            tags=[lang, ref.id, mode, spec.name],
            job_type=str(cfg.task),
        )
        log_config(loggers, config)
        checkpoint = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="best-{epoch}",
                                     monitor="val/f1", mode="max", save_top_k=1)
        on_cpu = str(cfg.trainer.get("accelerator", "cpu")) == "cpu"
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            **ccfg.trainer,
            logger=loggers or False,
            callbacks=[checkpoint],
            # Same seed, same metrics: deterministic kernels on CPU, where they cost little.
            deterministic=True if on_cpu and cfg.seed is not None else cfg.trainer.get("deterministic", False),
        )

        t0 = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        timings["fit_s"] = time.perf_counter() - t0
        best = checkpoint.best_model_path
        if not best:
            raise RuntimeError("no checkpoint was saved: did validation run (limit_val_batches, max_epochs)?")

        threshold, tuned_f1 = module.threshold, None
        if spec.threshold == "tune":
            threshold, tuned_f1 = _tune(trainer, module, datamodule, best, spec.type)
        t0 = time.perf_counter()
        best_val = _metrics(trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0], "val")
        best_val["epoch"] = int(torch.load(best, map_location="cpu", mmap=True, weights_only=False)["epoch"])
        test = _metrics(trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0], "test")
        timings["evaluate_s"] = time.perf_counter() - t0
        if ccfg.get("save_head", True):
            # test() left the best checkpoint's weights in the module: keep just the head (~2 MB),
            # which is what a serving bundle needs (serving/bundle.py).
            save_head(module, output_dir / "head.safetensors")
        if not ccfg.keep_checkpoint:
            shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
        timings["total_s"] = time.perf_counter() - started

        extra = {
            "task_type": spec.type,
            "threshold": threshold,
            "threshold_tuned_val_f1": tuned_f1,
            "split_sizes": splits.counts(),
            "data_hash": data_hash,
            "feature_cache": None if cache is None else {"hits": cache.hits, "misses": cache.misses,
                                                         "encode_s": cache.encode_seconds},
        }
        record = build_results(task=spec.name, lang=lang, encoder=encoder_info, freeze=freeze, seed=cfg.seed,
                               test=test, best_val=best_val, timings=timings, config=config, extra=extra)
        path = write_results(output_dir, record)
        log.info("%s/%s seed %s: test F1 %.4f (best val F1 %.4f, epoch %d) -> %s", spec.name, lang, cfg.seed,
                 test["f1"], best_val["f1"], best_val["epoch"], path)
        failed = False
        return record
    except Exception as error:
        timings["total_s"] = time.perf_counter() - started
        record = build_results(
            task=str(cfg.cls_task.get("name")), lang=lang, encoder=encoder_info, freeze=freeze, seed=cfg.seed,
            test=None, best_val=None, timings=timings,
            config=config or OmegaConf.to_container(cfg, resolve=False), status="failed",
            error=f"{type(error).__name__}: {error}",
            extra={"traceback": traceback.format_exc()},
        )
        write_results(output_dir, record)
        raise
    finally:
        finish_wandb(failed)
