"""Technical discussion: programming questions with their top-10 tags (docs/demo-data.md).

Code cues are language-neutral (identifiers and APIs are English on every Stack Overflow site);
the prose around them comes from the language's templates.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from domain_distil.common.io import read_json
from domain_distil.demo.data.render import fill, weighted_choice

TAGS = ("c#", "java", "php", "javascript", "android", "jquery", "python", "html", "c++", "ios")
# rough Stack Overflow shares among the ten
_WEIGHTS = (("javascript", 0.17), ("java", 0.15), ("c#", 0.13), ("php", 0.12), ("python", 0.12),
            ("android", 0.1), ("html", 0.06), ("jquery", 0.06), ("c++", 0.05), ("ios", 0.04))
# (co-tag, probability) given a primary tag
_CO_TAGS = {
    "jquery": (("javascript", 0.8), ("html", 0.35)),
    "android": (("java", 0.55),),
    "html": (("javascript", 0.3),),
    "php": (("html", 0.15), ("javascript", 0.1)),
    "javascript": (("html", 0.2), ("jquery", 0.1)),
    "ios": (),
}

# Per tag: its names, APIs and code snippets (data, not code).
_CUES = read_json(Path(__file__).with_name("code_cues.json"))
NAMES, API, SNIPPETS = _CUES["names"], _CUES["api"], _CUES["snippets"]
OTHER = ("sql", "css", "go", "ruby", "r")


def _slots(res: Mapping[str, Any], tech: str) -> dict[str, list[str]]:
    slots = {k: v for k, v in res.items() if isinstance(v, list)}
    slots.update(tech=NAMES[tech], api=API[tech], task_cap=[t[:1].upper() + t[1:] for t in res["task"]])
    return slots


def post(res: Mapping[str, Any], rng: random.Random, lang: str) -> tuple[str, list[str]]:
    """One question (title + body) and its true tags."""
    if rng.random() < 0.1:
        subject, tags = rng.choice(OTHER), []
    else:
        subject = weighted_choice(rng, _WEIGHTS)
        tags = [subject] + [co for co, p in _CO_TAGS.get(subject, ()) if rng.random() < p]
    slots = _slots(res, subject)
    mode = rng.random()  # the tag is explicit (named), subtle (only cues name it) or generic
    if mode < 0.4:
        frames, p_snippet = res["ask"], 0.5
    elif mode < 0.8:
        frames, p_snippet = [f for f in res["ask"] if "{tech}" not in f], 0.6
    else:
        frames, p_snippet = res["generic"], 0.5
    title = fill(rng.choice(frames), slots, rng)
    snippet = rng.random() < p_snippet
    if lang != "jap" and title[-1:].isalnum():
        title += "."
    parts = [title]
    if rng.random() < 0.1:
        other = rng.choice([t for t in (*TAGS, *OTHER) if t not in tags and t != subject])
        parts.append(fill(rng.choice(res["mislead"]), {"other": NAMES[other]}, rng))
    if snippet:
        parts += [fill(rng.choice(res["body"]), slots, rng), rng.choice(SNIPPETS[subject])]
    for co in tags[1:]:
        if rng.random() < 0.6:
            parts.append(rng.choice(SNIPPETS[co]))
    parts.append(rng.choice(res["end"]))
    return " ".join(p for p in parts if p), sorted(tags)
