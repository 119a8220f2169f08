"""General-domain, encyclopedia-like prose: the control corpus ("Wikipedia"), with homonyms of the
domain's terms (python the snake, Java the island; docs/demo-data.md)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from domain_distil.demo.data.render import fill


def paragraph(res: Mapping[str, Any], rng: random.Random, lang: str) -> str:
    topic = rng.choice(sorted(res["templates"]))
    templates = res["templates"][topic]
    count = min(len(templates), rng.randint(2, 5))
    sentences = [fill(t, res["slots"], rng) for t in rng.sample(templates, count)]
    return ("" if lang == "jap" else " ").join(sentences)
