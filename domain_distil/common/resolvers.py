"""OmegaConf resolvers the configs use; :func:`register_resolvers` is called once by ``domain_distil.cli``.

``${overrides_hash:}`` names a sweep point by a short stable hash of its overrides instead of
spelling them out (why: docs/statistics.md, "Sweep folders").
``${distill_precision:${trainer.accelerator},${trainer.precision}}`` is the distillation's precision:
bf16-mixed on a CPU with bf16 units, else the trainer group's (``common/cpu.py: distill_precision``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from omegaconf import OmegaConf

from domain_distil.common.cpu import distill_precision

HASH_PREFIX = "h"  # a letter first: a name of hex digits only could read as a number to Hydra
HASH_HEX_DIGITS = 7


def short_hash(text: str) -> str:
    """``h`` + the first 7 hex digits of SHA-1: stable across processes and machines (unlike ``hash()``)."""
    return HASH_PREFIX + hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_HEX_DIGITS]


def overrides_hash(*, _root_: Any) -> str:
    """Short hash of ``hydra.job.override_dirname``, read from the root config.

    Takes no argument on purpose: Hydra's command-line grammar rejects a nested interpolation such as
    ``${f:${hydra.job.override_dirname}}``, so ``hydra.sweep.subdir=${overrides_hash:}/seed${seed}``
    stays writable on the command line (single-quoted for the shell, which would expand ``${...}``).
    """
    dirname = OmegaConf.select(_root_, "hydra.job.override_dirname", default=None)
    if dirname is None:
        raise ValueError("${overrides_hash:} needs hydra.job.override_dirname: use it inside hydra.run/sweep settings")
    return short_hash(str(dirname))


_RESOLVERS = {"overrides_hash": overrides_hash, "distill_precision": distill_precision}


def register_resolvers() -> None:
    """Register every resolver above; calling it again is a no-op (tests and the CLI both call it)."""
    for name, resolver in _RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
