"""The bundle encoder's CPU variants (``conversion.variants``: the code ``task=speed`` times) in the
predictor's encoder contract, and their check against fp32 on held-out texts: a fast encoder that
changes the answers is no use (docs/serving.md, "CPU variants").
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from domain_distil.analysis.messages import read_texts
from domain_distil.common.errors import UserInputError
from domain_distil.conversion.int8 import Int8Settings, read_record
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.runners import onnx_session_runner
from domain_distil.conversion.variants import (
    VARIANTS,
    check_onnx_installed,
    int8_graph,
    publish_chosen_layers,
    variant_runner,
)
from domain_distil.serving.bundle_load import Bundle, load_bundle
from domain_distil.serving.predictor import EncoderFn, Predictor, torch_encoder

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def exports_folder(workdir: str | Path, encoder_hash: str) -> Path:
    """Where an encoder's ONNX exports live: one folder per encoder content hash."""
    return Path(workdir) / f"encoder-{encoder_hash[:16]}"


def with_recorded_layers(settings: Int8Settings, manifest: Mapping[str, Any]) -> Int8Settings:
    """``settings`` with ``exclude=auto`` replaced by the layers a bundle recorded for the same
    settings (``manifest["int8"]``, written by ``task=bundle``), so serving needs no calibration
    texts; unchanged when there is no such record."""
    record = manifest.get("int8")
    if not settings.auto or not record:
        return settings
    if record.get("settings") != settings.effective():
        # e.g. built on a VNNI CPU (8-bit weights) and served on one without (7-bit): measure again
        log.warning("the bundle's int8 record was made with other settings (%s, here %s); exclude=auto "
                    "measures again", record.get("settings"), settings.effective())
        return settings
    return replace(settings, exclude=tuple(record["excluded"]))


def _int8_graph(encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, exports: Path, threads: int,
                settings: Int8Settings, calibration_texts: Sequence[str] | None) -> Path:
    calibration = Calibration.from_texts(tokenizer, calibration_texts) if settings.auto and calibration_texts else None
    check_onnx_installed()
    graph = int8_graph(encoder.eval(), exports, settings, calibration, threads)
    if settings.auto:  # what serving asks for once a bundle recorded the chosen layers
        publish_chosen_layers(graph, settings)
    return graph


def int8_record(encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, exports: Path, threads: int,
                settings: Int8Settings, calibration_texts: Sequence[str] | None) -> dict[str, Any]:
    """The record (settings, excluded layers: ``conversion.int8``) of ``encoder``'s int8 graph,
    built if need be without running it; ``exclude=auto`` measures on ``calibration_texts``
    tokenized by ``tokenizer``."""
    return read_record(_int8_graph(encoder, tokenizer, exports, threads, settings, calibration_texts))


def encoder_backend(kind: str, bundle: Bundle, workdir: str | Path | None = None, threads: int = 1,
                    int8: Int8Settings | None = None, calibration_texts: Sequence[str] | None = None,
                    ) -> tuple[EncoderFn, dict[str, Any] | None]:
    """The bundle's encoder as ``fp32`` (PyTorch), ``int8`` (ONNX Runtime int8, quantized with
    ``int8``, default :class:`Int8Settings`, and the layers the bundle recorded for ``exclude=auto``)
    or ``onnx`` (ONNX Runtime fp32), and for ``int8`` the record of the graph it runs (None for the
    others); exports go to ``<workdir or bundle/onnx>/encoder-<hash>/``."""
    if kind not in VARIANTS:
        raise ValueError(f"unknown encoder backend {kind!r}; expected one of {VARIANTS}")
    if kind == "fp32":
        return torch_encoder(bundle.encoder), None
    exports = exports_folder(workdir if workdir is not None else bundle.root / "onnx", bundle.encoder_hash)
    record = None
    if kind == "onnx":
        runner = variant_runner(kind, bundle.encoder, exports, threads)[0]
    else:
        settings = with_recorded_layers(int8 or Int8Settings(), bundle.manifest)
        graph = _int8_graph(bundle.encoder, bundle.tokenizer, exports, threads, settings, calibration_texts)
        runner, record = onnx_session_runner(graph, threads), read_record(graph)
        log.info("int8 encoder: %s, layers off the fast path: %s", record["settings"]["method"],
                 record["excluded"] or "none")

    def encode(input_ids: Tensor, attention_mask: Tensor) -> Tensor:  # the runner's NumPy out as a tensor
        return torch.from_numpy(runner({"input_ids": input_ids, "attention_mask": attention_mask}))

    return encode, record


def _decisions(output: dict[str, Any]) -> list[bool]:
    if output["type"] == "binary":
        return [output["label"] == output["positive_label"]]
    return [label in output["labels"] for label in output["probabilities"]]


def _probs(output: dict[str, Any]) -> list[float]:
    return [output["probability"]] if output["type"] == "binary" else list(output["probabilities"].values())


def agreement(reference: list[list[dict[str, Any]]], candidate: list[list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per head key: ``flip_rate`` (decisions that differ / all decisions), ``text_flip_rate``
    (texts whose answer differs at all), ``max_abs_prob_diff``, ``texts``."""
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for ref_row, cand_row in zip(reference, candidate, strict=True):
        for ref, cand in zip(ref_row, cand_row, strict=True):
            pairs[f"{ref['task']}/{ref['lang']}"].append((ref, cand))
    stats: dict[str, dict[str, float]] = {}
    for key, rows in pairs.items():
        flips = [[x != y for x, y in zip(_decisions(r), _decisions(c), strict=True)] for r, c in rows]
        diffs = [abs(x - y) for r, c in rows for x, y in zip(_probs(r), _probs(c), strict=True)]
        stats[key] = {"flip_rate": sum(map(sum, flips)) / sum(map(len, flips)),
                      "text_flip_rate": sum(map(any, flips)) / len(rows), "max_abs_prob_diff": max(diffs),
                      "texts": len(rows)}
    return stats


def compare_backends(bundle: Bundle, texts: Sequence[str], variants: Sequence[str] = ("int8", "onnx"),
                     workdir: str | Path | None = None, batch_size: int = 32, threads: int = 1,
                     int8: Int8Settings | None = None, calibration_texts: Sequence[str] | None = None,
                     ) -> dict[str, Any]:
    """Run fp32 and each variant over ``texts`` with every head; flipped-prediction rates per head.

    A variant that cannot be built (e.g. onnxruntime missing) is reported with its error instead
    of aborting the others; a configuration error (e.g. ``exclude=auto`` without calibration texts)
    is raised."""
    if not texts:
        raise ValueError("compare_backends needs at least one held-out text")
    started = time.perf_counter()
    reference = Predictor(bundle, batch_size=batch_size).predict(texts)
    report: dict[str, Any] = {"texts": len(texts), "fp32_s": time.perf_counter() - started, "variants": {}}
    for kind in variants:
        if kind == "fp32":
            continue
        try:
            encoder, record = encoder_backend(kind, bundle, workdir, threads, int8, calibration_texts)
        except UserInputError:
            raise
        except Exception as error:  # noqa: BLE001  one failing variant must not hide the others
            report["variants"][kind] = {"error": f"{type(error).__name__}: {error}"}
            log.warning("%s encoder unavailable: %s", kind, error)
            continue
        started = time.perf_counter()
        outputs = Predictor(bundle, encoder_fn=encoder, batch_size=batch_size).predict(texts)
        heads = agreement(reference, outputs)
        report["variants"][kind] = {
            "seconds": time.perf_counter() - started,
            "flip_rate": max(h["flip_rate"] for h in heads.values()),
            "heads": heads,
            **({"settings": record["settings"]} if record is not None else {}),
        }
        log.info("%s vs fp32 on %d texts: worst head flip rate %.4f", kind, len(texts), report["variants"][kind]["flip_rate"])
    return report


def int8_settings(cfg: DictConfig) -> Int8Settings:
    """The ``int8`` config group of a run's config (``conf/int8/default.yaml``) as settings; a
    config without it gets the defaults. serve, predict and bundle all read it here."""
    from omegaconf import OmegaConf

    group = cfg.get("int8")
    return Int8Settings.from_config(OmegaConf.to_container(group, resolve=True) if group is not None else None)


def int8_calibration_texts(cfg: DictConfig) -> list[str] | None:
    """``int8.calibration.texts`` read (at most ``max_texts``), or None when unset: the held-out
    corpus text that ``int8.exclude=auto`` measures each layer on."""
    calibration = (cfg.get("int8") or {}).get("calibration") or {}
    if not calibration.get("texts"):
        return None
    return read_texts(calibration["texts"])[: int(calibration.get("max_texts", 128))]


def predictor_from_config(cfg: DictConfig, node: DictConfig, calibration_texts: Sequence[str] | None) -> Predictor:
    """The predictor that ``task=serve`` and ``task=predict`` run: ``node`` (their group) names the
    bundle, backend, threads and batch size; ``calibration_texts`` feed ``int8.exclude=auto``."""
    if node.threads:
        torch.set_num_threads(int(node.threads))
    bundle = load_bundle(node.bundle, cache_dir=cfg.paths.cache_dir)
    encoder, _ = encoder_backend(str(node.backend), bundle, Path(cfg.paths.cache_dir) / "onnx", int(node.threads or 1),
                              int8_settings(cfg), calibration_texts)
    return Predictor(bundle, encoder_fn=encoder, batch_size=int(node.batch_size))
