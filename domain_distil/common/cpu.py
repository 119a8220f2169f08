"""What the CPU can do, from its Linux flags: the one reader of ``/proc/cpuinfo``'s flags, for the CPU
distillation precision (:func:`distill_precision`) and benchmark lines (``conversion/int8.py``).
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Instructions that multiply bf16 natively: AVX-512 BF16 dot products and AMX tiles. Without them
# torch's bf16 matrix products on the CPU convert to fp32 and gain nothing.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Lightning's names for full fp32 (what `conf/trainer/cpu.yaml` says), which a bf16 CPU upgrades.
FP32_PRECISIONS = frozenset({"32", "32-true"})


def cpu_flags(cpuinfo: Path | None = None) -> set[str] | None:
    """The flags every ``flags`` line of ``cpuinfo`` (default :data:`CPUINFO`) lists; None without it."""
    cpuinfo = cpuinfo or CPUINFO
    if not cpuinfo.is_file():
        return None
    lines = cpuinfo.read_text().splitlines()
    return {flag for line in lines if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def bf16_instructions(cpuinfo: Path | None = None) -> str:
    """The CPU's bf16 instructions in words, for benchmark lines (bf16's speed-up depends on them)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return "unknown bf16 instructions (no /proc/cpuinfo)"
    found = [flag for flag in BF16_FLAGS if flag in flags]
    return ", ".join(found) if found else "no bf16 instructions (no avx512_bf16/amx_bf16)"


def has_bf16_units(cpuinfo: Path | None = None) -> bool:
    return not (cpu_flags(cpuinfo) or set()).isdisjoint(BF16_FLAGS)


def distill_precision(accelerator: str, precision: str, cpuinfo: Path | None = None) -> str:
    """fp32 on a CPU with bf16 units becomes ``bf16-mixed`` (2x or more the tokens/s there,
    ``benchmarks/distill_speed.py``); anything else stands."""
    if str(accelerator) == "cpu" and str(precision) in FP32_PRECISIONS and has_bf16_units(cpuinfo):
        return "bf16-mixed"
    return str(precision)
