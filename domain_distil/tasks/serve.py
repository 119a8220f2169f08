"""``task=serve``: the HTTP server of docs/serving.md over a bundle.

    python run.py task=serve serve.bundle=outputs/bundle serve.port=8080
    python run.py task=serve serve.bundle=outputs/bundle serve.backend=int8 serve.threads=4

Blocks until SIGINT/SIGTERM, then shuts down gracefully (requests in flight are answered).
"""

from __future__ import annotations

from omegaconf import DictConfig

from domain_distil.serving.quantize import int8_calibration_texts, predictor_from_config
from domain_distil.serving.server import ServerSettings, create_app, make_server


def build_app(cfg: DictConfig):
    sc = cfg.serve
    if not sc.bundle:
        raise ValueError("task=serve needs serve.bundle=<bundle folder> (built by task=bundle)")
    settings = ServerSettings(max_batch=int(sc.max_batch), max_wait_ms=float(sc.max_wait_ms), max_texts=int(sc.max_texts),
                              max_chars=int(sc.max_chars), max_body_bytes=int(sc.max_body_bytes),
                              max_pending=int(sc.max_pending))
    calibration = int8_calibration_texts(cfg) if sc.backend == "int8" else None
    return create_app(predictor_from_config(cfg, sc, calibration), settings)


def run(cfg: DictConfig) -> None:
    sc = cfg.serve
    server = make_server(build_app(cfg), host=str(sc.host), port=int(sc.port),
                         graceful_timeout_s=int(sc.graceful_timeout_s), log_level=str(sc.log_level))
    server.run()
