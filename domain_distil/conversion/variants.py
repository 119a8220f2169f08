"""An encoder's CPU deployment variants (``VARIANTS``: the PyTorch model, its fp32 ONNX export, that
export quantized to int8), built once into a folder and run as :class:`Runner`. Serving and Table 5
both go through :func:`variant_runner`, so what is timed is what is served. Each graph is a cache
entry of its own, built under a lock and renamed into place (concurrent servers export once and
never read half a file); an int8 export made with other settings is never reused.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from domain_distil.common.io import write_json
from domain_distil.common.locking import build_entry
from domain_distil.conversion.int8 import (
    RECORD,
    Int8Settings,
    quantize_int8,
    read_record,
    require_calibration,
)
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.onnx_export import EXPORT_FORMAT, ONNX_PACKAGES, export_onnx, onnx_size_mb
from domain_distil.conversion.runners import Runner, onnx_session_runner, torch_runner

VARIANTS = ("fp32", "int8", "onnx")
GRAPH = "model.onnx"
FORMAT = "export_format"  # beside the fp32 graph: EXPORT_FORMAT (int8 keys include it)


def _has_graph(folder: Path) -> bool:
    return (folder / GRAPH).is_file()


def _has_current_export(folder: Path) -> bool:
    return _has_graph(folder) and (folder / FORMAT).is_file() and (folder / FORMAT).read_text() == str(EXPORT_FORMAT)


def onnx_graph(model: torch.nn.Module, folder: Path) -> Path:
    """The fp32 ONNX graph of ``model`` under ``folder/onnx`` (exported on first use, and again over
    an entry of another ``EXPORT_FORMAT``)."""

    def export(tmp: Path) -> None:
        export_onnx(model, tmp / GRAPH)
        (tmp / FORMAT).write_text(str(EXPORT_FORMAT))

    return build_entry(folder / "onnx", export, _has_current_export) / GRAPH


def int8_graph(model: torch.nn.Module, folder: Path, settings: Int8Settings | None = None,
               calibration: Calibration | None = None, threads: int = 1) -> Path:
    """The int8 ONNX graph of ``model`` under ``folder/int8-<settings key>`` (quantized from the fp32
    export with ``settings``, default :class:`Int8Settings`; ``exclude=auto`` measures on
    ``calibration`` with ``threads`` threads). ``conversion.int8.read_record(path)`` says which
    layers it excluded."""
    settings = settings or Int8Settings()
    require_calibration(settings, calibration)
    source = onnx_graph(model, folder)
    entry = build_entry(folder / f"int8-{settings.key(calibration)}",
                        lambda tmp: quantize_int8(source, tmp / GRAPH, settings, calibration, threads), _has_graph)
    return entry / GRAPH


def publish_chosen_layers(graph: Path, settings: Int8Settings) -> Path:
    """The ``exclude=auto`` int8 ``graph`` (built with ``settings``) also as the entry of the layers
    it chose, ``replace(settings, exclude=<them>)``: the settings serving applies once a bundle
    recorded them, so they are not quantized again. The same graph (hard links where the file
    system allows), recorded as :func:`quantize_int8` records those settings."""
    excluded = read_record(graph)["excluded"]
    chosen = replace(settings, exclude=tuple(excluded))

    def link(tmp: Path) -> None:
        for file in graph.parent.iterdir():
            if file.is_file() and file.name != RECORD:
                try:
                    os.link(file, tmp / file.name)
                except OSError:
                    shutil.copy2(file, tmp / file.name)
        write_json(tmp / RECORD, {"settings": chosen.effective(), "excluded": excluded})

    return build_entry(graph.parent.parent / f"int8-{chosen.key()}", link, _has_graph) / GRAPH


def check_onnx_installed() -> None:
    """ImportError naming the packages to install, before any export work starts."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{error.name or error} not installed: pip install {ONNX_PACKAGES}") from error


def variant_runner(kind: str, model: torch.nn.Module, folder: Path, threads: int = 1,
                   int8: Int8Settings | None = None, calibration: Calibration | None = None,
                   ) -> tuple[Runner, float | None]:
    """``model`` as variant ``kind`` (``VARIANTS``): (runner, size of its ONNX file in MB; None for fp32).
    ``int8`` and ``calibration`` as for :func:`int8_graph`. ``folder`` holds the exported files and
    must be specific to the model's weights (the caller keys it by the encoder's content hash or id).
    """
    if kind not in VARIANTS:
        raise ValueError(f"unknown encoder variant {kind!r}; expected one of {VARIANTS}")
    if kind == "fp32":
        return torch_runner(model.eval()), None
    check_onnx_installed()
    graph = (onnx_graph(model.eval(), folder) if kind == "onnx"
             else int8_graph(model.eval(), folder, int8, calibration, threads))
    return onnx_session_runner(graph, threads), onnx_size_mb(graph)
