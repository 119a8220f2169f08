"""``task=serve``: the HTTP server of docs/serving.md over a bundle.

    python run.py task=serve serve.bundle=outputs/bundle serve.port=8080
    python run.py task=serve serve.bundle=outputs/bundle serve.backend=int8 serve.threads=4

Blocks until SIGINT/SIGTERM, then shuts down gracefully (requests in flight are answered).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from domain_distil.serving.bundle_load import load_bundle
from domain_distil.serving.predictor import Predictor
from domain_distil.serving.quantize import encoder_backend, int8_calibration_texts, int8_settings
from domain_distil.serving.server import ServerSettings, create_app, make_server


def build_app(cfg: DictConfig):
    sc = cfg.serve
    if not sc.bundle:
        raise ValueError("task=serve needs serve.bundle=<bundle folder> (built by task=bundle)")
    if sc.threads:
        torch.set_num_threads(int(sc.threads))
    bundle = load_bundle(sc.bundle, cache_dir=cfg.paths.cache_dir)
    encoder = encoder_backend(str(sc.backend), bundle, Path(cfg.paths.cache_dir) / "onnx", int(sc.threads or 1),
                              int8_settings(cfg), int8_calibration_texts(cfg) if sc.backend == "int8" else None)
    settings = ServerSettings(max_batch=int(sc.max_batch), max_wait_ms=float(sc.max_wait_ms), max_texts=int(sc.max_texts),
                              max_chars=int(sc.max_chars), max_body_bytes=int(sc.max_body_bytes),
                              max_pending=int(sc.max_pending))
    return create_app(Predictor(bundle, encoder_fn=encoder, batch_size=int(sc.batch_size)), settings)


def run(cfg: DictConfig) -> None:
    sc = cfg.serve
    server = make_server(build_app(cfg), host=str(sc.host), port=int(sc.port),
                         graceful_timeout_s=int(sc.graceful_timeout_s), log_level=str(sc.log_level))
    server.run()
