"""Conversational commerce: customer and agent messages with an intentful / not-intentful label.

A customer message is *intentful* when it asks the business to do or find out something (order
status, refund, delivery, account, billing, complaint), and *not intentful* otherwise (greetings,
thanks, small talk, answers to the agent's questions). The generator makes this hard on purpose:

- minimal pairs: "the refund arrived, thanks" / "the refund never arrived" share most words, and
  the words that tell them apart also occur in the other class ("never mind", "still, thanks");
- a large share of intentful messages is indirect ("still nothing on my side") and carries little
  commerce vocabulary;
- many not-intentful messages are full of it ("thanks, the refund arrived");
- borderline messages (venting, feedback, questions about the shop) get either label, as real
  annotators disagree on them;
- messages are wrapped in the same greetings and closings whatever their label;
- chat noise (typos, lower case, missing accents and punctuation) blurs the surface further.

Label noise is applied later by the generator, on top of these (so the true label stays known).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from domain_distil.demo.data.render import chat_noise, fill

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


def _choice_weighted(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    r, acc = rng.random(), 0.0
    for name, weight in items:
        acc += weight
        if r < acc:
            return name
    return items[-1][0]


def _join(lang: str, parts: list[str]) -> str:
    sep = "" if lang == "jap" else " "
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if out and lang != "jap" and out[-1][-1].isalnum():
            out[-1] += _punct(part)
        out.append(part)
    return sep.join(out)


def _punct(next_part: str) -> str:
    """A comma before a lower-case continuation, a full stop otherwise."""
    return "," if next_part[:1].islower() else "."


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
    return fill(rng.choice(res[_choice_weighted(rng, NOT_KINDS)]), slots, rng)


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


def conversation(res: Mapping[str, Any], rng: random.Random, lang: str, exclude: set[str]) -> str:
    """An agent/customer exchange as one corpus document; no customer turn equals a task text."""
    turns = [fill(rng.choice(res["agent"]), res["slots"], rng)]
    for _ in range(rng.randint(2, 5)):
        for _attempt in range(20):
            text, _ = customer_message(res, rng, lang)
            if text not in exclude:
                break
        else:
            continue
        turns.append(text)
        if rng.random() < 0.8:
            turns.append(fill(rng.choice(res["agent"]), res["slots"], rng))
    return " ".join(turns)


def customer_turns(res: Mapping[str, Any], rng: random.Random, lang: str, exclude: set[str]) -> str:
    """Two to five customer messages of one chat as one corpus document: the task's own text kind
    (what ``cc_intent`` classifies), none of them a task text."""
    turns = []
    for _ in range(rng.randint(2, 5)):
        for _attempt in range(20):
            text, _ = customer_message(res, rng, lang)
            if text not in exclude:
                turns.append(text)
                break
    return " ".join(turns)
