"""General-domain, encyclopedia-like prose: the control corpus ("Wikipedia").

Paragraphs of two to five sentences on one topic (history, geography, nature, music, sport,
science). The words that are technical terms in the in-domain data appear here in their general
senses (python the snake, Java the island, coffee, parade and fishing floats, ferry terminals,
social and piano classes, the oracle of legend), so the control corpus shares surface forms with
the domain but not their meaning.
"""

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
