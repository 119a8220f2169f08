"""Seeding that treats 0 as a seed."""

from __future__ import annotations

import lightning as L


def seed_everything(seed: int | None) -> None:
    # `if seed:` would leave seed 0 unseeded (the lightning-hydra-template bug); 0 is a seed.
    if seed is not None:
        L.seed_everything(int(seed), workers=True)
