"""Conversational commerce: customer messages, *intentful* when they ask the business to do or find
out something (what makes it hard on purpose: docs/demo-data.md). The generator adds label noise
later, so the labels here are the true ones.

A language's ``cc`` templates (``lang/<lang>.json``): ``intent`` (per category) and ``indirect``
(intentful, said sideways); ``mention`` (not intentful, full of commerce words), ``chat`` and
``slot`` (answers to an agent's question); ``borderline``; ``pairs`` of [not intentful, intentful]
texts; ``greet`` and ``close`` wrappers; ``translated_intent`` / ``translated_other`` (literal
renderings of English templates, empty for English); ``slots``, the values of ``{slot}``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from domain_distil.demo.data.render import chat_noise, fill, fresh, weighted_choice

INTENTFUL, NOT_INTENTFUL = "intentful", "not_intentful"
LABELS = (INTENTFUL, NOT_INTENTFUL)

# share of intentful messages, and of the kinds inside each class
P_INTENT = 0.45
P_INDIRECT = 0.5
# share of messages (either class) drawn from minimal pairs that differ in a word or two
P_PAIR = 0.3
# borderline messages (venting, feedback, general questions) on which annotators disagree: their
# label is a coin flip, as inconsistent real annotation makes it
P_BORDERLINE = 0.15
NOT_KINDS = (("mention", 0.4), ("chat", 0.3), ("slot", 0.3))


def _join(lang: str, parts: list[str]) -> str:
    sep = "" if lang == "jap" else " "
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if out and lang != "jap" and out[-1][-1].isalnum():
            out[-1] += "," if part[:1].islower() else "."  # a comma before a lower-case continuation
        out.append(part)
    return sep.join(out)


def _core(res: Mapping[str, Any], rng: random.Random, label: str) -> str:
    slots = res["slots"]
    if rng.random() < P_PAIR:
        calm, request = rng.choice(res["pairs"])
        return fill(request if label == INTENTFUL else calm, slots, rng)
    if label == INTENTFUL:
        if rng.random() < P_INDIRECT:
            return fill(rng.choice(res["indirect"]), slots, rng)
        category = rng.choice(sorted(res["intent"]))
        return fill(rng.choice(res["intent"][category]), slots, rng)
    return fill(rng.choice(res[weighted_choice(rng, NOT_KINDS)]), slots, rng)


def customer_message(res: Mapping[str, Any], rng: random.Random, lang: str, noise: float = 0.25) -> tuple[str, str]:
    """One natural customer message and its true label."""
    if rng.random() < P_BORDERLINE:
        label = INTENTFUL if rng.random() < 0.5 else NOT_INTENTFUL
        parts = [fill(rng.choice(res["borderline"]), res["slots"], rng)]
    else:
        label = INTENTFUL if rng.random() < P_INTENT else NOT_INTENTFUL
        parts = [_core(res, rng, label)]
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(res["greet"]))
    if rng.random() < 0.2:
        # pleasantries around a request, or a second harmless remark
        parts.append(fill(rng.choice(res["chat"] if rng.random() < 0.5 else res["mention"]), res["slots"], rng))
    if rng.random() < 0.2:
        parts.append(rng.choice(res["close"]))
    return chat_noise(_join(lang, parts), rng, lang, noise), label


def translated_message(res: Mapping[str, Any], rng: random.Random, lang: str) -> tuple[str, str]:
    """A message rendered from English templates with literal, stiffer phrasing (no chat noise:
    machine translation output is clean but unidiomatic)."""
    if not res["translated_intent"]:
        raise ValueError(f"language {lang!r} has no translated templates")
    label = INTENTFUL if rng.random() < P_INTENT else NOT_INTENTFUL
    pool = res["translated_intent"] if label == INTENTFUL else res["translated_other"]
    parts = [fill(rng.choice(pool), res["slots"], rng)]
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(res["greet"]))
    return _join(lang, parts), label


def customer_turns(res: Mapping[str, Any], rng: random.Random, lang: str, exclude: set[str]) -> str:
    """Two to five customer messages of one chat as one corpus document: the task's own text kind
    (what ``cc_intent`` classifies), none of them a task text."""
    turns = [fresh(lambda: customer_message(res, rng, lang), exclude) for _ in range(rng.randint(2, 5))]
    return " ".join(turn for turn in turns if turn)
