"""An encoder's CPU deployment variants (``VARIANTS``: the PyTorch model, its fp32 ONNX export, that
export quantized to int8), built once into a folder and run as :class:`Runner`. Serving and Table 5
both go through :func:`variant_runner`, so what is timed is what is served. Each graph is a cache
entry of its own, built under a lock and renamed into place (concurrent servers export once and
never read half a file); an int8 export made with other settings is never reused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from domain_distil.common.locking import build_entry
from domain_distil.conversion.int8 import Int8Settings, quantize_int8, require_calibration
from domain_distil.conversion.int8_auto import Calibration
from domain_distil.conversion.onnx_export import ONNX_PACKAGES, export_onnx, onnx_size_mb
from domain_distil.conversion.runners import Runner, onnx_session_runner, torch_runner

VARIANTS = ("fp32", "int8", "onnx")
GRAPH = "model.onnx"


def _has_graph(folder: Path) -> bool:
    return (folder / GRAPH).is_file()


def onnx_graph(model: torch.nn.Module, folder: Path) -> Path:
    """The fp32 ONNX graph of ``model`` under ``folder/onnx`` (exported on first use)."""
    entry = build_entry(folder / "onnx", lambda tmp: export_onnx(model, tmp / GRAPH), _has_graph)
    return entry / GRAPH


def int8_graph(model: torch.nn.Module, folder: Path, settings: Int8Settings | None = None,
               calibration: Calibration | None = None) -> Path:
    """The int8 ONNX graph of ``model`` under ``folder/int8-<settings key>`` (quantized from the fp32
    export with ``settings``, default :class:`Int8Settings`; ``exclude=auto`` measures on
    ``calibration``). ``conversion.int8.read_record(path)`` says which layers it excluded."""
    settings = settings or Int8Settings()
    require_calibration(settings, calibration)
    source = onnx_graph(model, folder)
    entry = build_entry(folder / f"int8-{settings.key(calibration)}",
                        lambda tmp: quantize_int8(source, tmp / GRAPH, settings, calibration), _has_graph)
    return entry / GRAPH


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
    graph = onnx_graph(model.eval(), folder) if kind == "onnx" else int8_graph(model.eval(), folder, int8, calibration)
    return onnx_session_runner(graph, threads), onnx_size_mb(graph)
