"""OmegaConf resolvers the configs use: ``${overrides_hash:}`` names a sweep point by a short stable
hash of its overrides (docs/statistics.md, "Sweep folders"); ``${distill_precision:...}`` is ``cpu.py``'s.
"""

from __future__ import annotations

import hashlib
from typing import Any

from omegaconf import OmegaConf

from domain_distil.common.cpu import distill_precision


def short_hash(text: str) -> str:
    """``h`` + the first 7 hex digits of SHA-1: stable across processes and machines (unlike ``hash()``);
    a letter first, since a name of hex digits only could read as a number to Hydra."""
    return "h" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:7]


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
    """Register every resolver above; calling it again is a no-op."""
    for name, resolver in _RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
