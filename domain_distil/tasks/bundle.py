"""``task=bundle``: one encoder plus the heads of ``task=classify`` jobs in one serving folder, optionally
with the int8/ONNX flip rates (``bundle.check.texts``) and a calibrated int8 variant (docs/serving.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from domain_distil.analysis.messages import read_texts
from domain_distil.analysis.speed import cpu_threads
from domain_distil.common.globs import expand_paths
from domain_distil.common.io import write_json
from domain_distil.encoders import encoder_hash, load_encoder
from domain_distil.serving.bundle_build import build_bundle, find_jobs, read_job, select_heads
from domain_distil.serving.bundle_format import BundleError
from domain_distil.serving.bundle_load import load_bundle
from domain_distil.serving.quantize import (
    compare_backends,
    exports_folder,
    int8_calibration_texts,
    int8_record,
    int8_settings,
)

log = logging.getLogger(__name__)


def _encoder_of(heads: list, explicit: str | None) -> str:
    if explicit:
        return str(explicit)
    sources = sorted({str(h.source["encoder"].get("name_or_path")) for h in heads})
    if len(sources) != 1:
        raise BundleError(f"the jobs were trained on different encoders {sources}; set bundle.encoder to the one to "
                          "serve (heads of the others are refused)")
    return sources[0]


def _int8_record(cfg: DictConfig, encoder: str, calibration: list[str]) -> dict[str, Any]:
    """The manifest record of the encoder's int8 variant, exported where serving looks for it."""
    model, tokenizer = load_encoder(encoder, revision=cfg.bundle.revision)
    digest = encoder_hash(encoder, cfg.bundle.revision, cfg.paths.cache_dir)
    threads = int(cfg.bundle.check.threads)
    with cpu_threads(threads):
        record = int8_record(model, tokenizer, exports_folder(Path(cfg.paths.cache_dir) / "onnx", digest), threads,
                             int8_settings(cfg), calibration)
    log.info("int8 (%s): layers off the fast path %s", record["settings"]["method"], record["excluded"] or "none")
    return record


def run(cfg: DictConfig) -> dict[str, Any]:
    bc = cfg.bundle
    if not bc.jobs:
        raise BundleError("bundle.jobs is empty: give task=classify job or sweep folders, e.g. 'bundle.jobs=[outputs/sweep]'")
    # Entries may be glob patterns, so folders with `=` in their names (Hydra rejects it unquoted) are reachable.
    jobs = find_jobs(expand_paths(OmegaConf.to_container(bc.jobs, resolve=True), "bundle.jobs"))
    heads = select_heads([read_job(job) for job in jobs], str(bc.select))
    log.info("%d jobs -> %d heads: %s", len(jobs), len(heads), ", ".join(h.key for h in heads))
    encoder = _encoder_of(heads, bc.encoder)
    calibration = int8_calibration_texts(cfg)
    record = _int8_record(cfg, encoder, calibration) if calibration is not None else None
    output = build_bundle(encoder, heads, bc.output, copy_encoder=bool(bc.copy_encoder), revision=bc.revision,
                          overwrite=bool(bc.overwrite), cache_dir=cfg.paths.cache_dir, int8=record)
    result: dict[str, Any] = {"bundle": str(output), "heads": [h.key for h in heads], "encoder": encoder}
    if record is not None:
        result["int8"] = record
    check = bc.check
    if check.texts:
        texts = read_texts(check.texts)[: int(check.max_texts)]
        with cpu_threads(int(check.threads)):
            report = compare_backends(load_bundle(output, verify=False), texts, list(check.variants),
                                      workdir=Path(cfg.paths.cache_dir) / "onnx", threads=int(check.threads),
                                      int8=int8_settings(cfg), calibration_texts=calibration)
        report["texts_file"] = str(check.texts)
        write_json(Path(output) / "variants.json", report)
        for kind, entry in report["variants"].items():
            if "error" in entry:
                log.warning("%s: %s", kind, entry["error"])
            else:
                log.info("%s vs fp32 on %d held-out texts: flip rate per head %s", kind, len(texts),
                         {k: round(v["flip_rate"], 4) for k, v in entry["heads"].items()})
        result["variants"] = report
    return result
