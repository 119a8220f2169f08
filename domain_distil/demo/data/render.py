"""Shared machinery of the demo-data generator: seeded streams, slot filling, chat noise."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_SLOT = re.compile(r"\{(\w+)\}")
LATIN_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"
CYRILLIC_KEYBOARD = "йцукенгшщзхфывапролджэячсмитьб"


def stream(seed: int, *parts: str) -> random.Random:
    """An independent, reproducible random stream for one (seed, parts...) combination.

    Seeded by SHA-256, so a file depends only on its own stream: never on the order in which other
    files were generated, nor on Python's per-process string hashing.
    """
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def weighted_choice(rng: random.Random, items: Sequence[tuple[str, float]]) -> str:
    """One name of ``(name, weight)`` items (weights summing to 1), from a single ``rng.random()``."""
    # not rng.choices: it scales the draw by the weights' float sum, which would move the boundaries
    bounds = list(itertools.accumulate(weight for _, weight in items))
    return items[min(bisect.bisect(bounds, rng.random()), len(items) - 1)][0]


def fresh(make: Callable[[], tuple[str, Any]], exclude: set[str], tries: int = 20) -> str:
    """A text of ``make`` that is not in ``exclude`` (a corpus document must not be a task text), or ""."""
    for _ in range(tries):
        text, _ = make()
        if text not in exclude:
            return text
    return ""


def email(rng: random.Random, names: Sequence[str]) -> str:
    name = rng.choice(names).lower()
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "user"
    return f"{ascii_name}{rng.randint(1, 99)}@{rng.choice(['mail.com', 'correo.es', 'inbox.ru', 'example.jp', 'email.com.br'])}"


_GENERATED = {
    "order_id": lambda rng: rng.choice(["#", "", "", "N"]) + str(rng.randint(100000, 9999999)),
    "amount": lambda rng: f"{rng.randint(5, 480)}.{rng.choice(['00', '90', '99', '50', '45'])}",
    "num": lambda rng: str(rng.randint(2, 12)),
    "year": lambda rng: str(rng.randint(1480, 1990)),
    "year2": lambda rng: str(rng.randint(1500, 2010)),
    "big": lambda rng: str(rng.randint(20, 900)),
    "height": lambda rng: str(rng.randint(15, 60)),
    "yen": lambda rng: str(rng.randint(5, 480) * 100),
    "version": lambda rng: f"{rng.randint(2, 17)}.{rng.randint(0, 9)}",
    "line": lambda rng: str(rng.randint(3, 240)),
}


def fill(template: str, slots: Mapping[str, Sequence[str]], rng: random.Random) -> str:
    """Replace every ``{name}`` with a random value of that slot (generated or from ``slots``)."""

    def pick(match: re.Match) -> str:
        name = match.group(1)
        if name == "email":
            return email(rng, slots.get("name", ["user"]))
        if name in _GENERATED:
            return _GENERATED[name](rng)
        try:
            return rng.choice(slots[name])
        except KeyError:
            raise KeyError(f"template {template!r} uses slot {{{name}}} that has no values") from None

    # slot values may themselves hold slots (e.g. a product phrase with a {num})
    for _ in range(3):
        if "{" not in template:
            break
        template = _SLOT.sub(pick, template)
    return template


def typo(text: str, rng: random.Random, lang: str) -> str:
    """One realistic keyboard slip: a dropped, doubled, swapped or neighbouring character."""
    positions = [i for i, c in enumerate(text) if c.isalpha()]
    if len(positions) < 4:
        return text
    i = rng.choice(positions[1:-1])
    kind = rng.random()
    if kind < 0.3:
        return text[:i] + text[i + 1 :]
    if kind < 0.5:
        return text[:i] + text[i] + text[i:]
    if kind < 0.8 and i + 1 < len(text) and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    keyboard = CYRILLIC_KEYBOARD if lang == "rus" else LATIN_KEYBOARD
    if text[i].lower() in keyboard:
        j = keyboard.index(text[i].lower())
        return text[:i] + keyboard[max(0, min(len(keyboard) - 1, j + rng.choice([-1, 1])))] + text[i + 1 :]
    return text[:i] + text[i + 1 :]


def strip_accents(text: str) -> str:
    """Chat-style Spanish/Portuguese without accents (the Cyrillic й and Japanese kana are kept)."""
    decomposed = unicodedata.normalize("NFD", text)
    kept = "".join(c for c in decomposed if not (unicodedata.combining(c) and ord(c) < 0x0370))
    return unicodedata.normalize("NFC", kept)


def chat_noise(text: str, rng: random.Random, lang: str, rate: float) -> str:
    """Customer-chat surface noise: typos, lower case, missing accents and punctuation."""
    if rng.random() < rate:
        text = typo(text, rng, lang)
    if rng.random() < rate / 2:
        text = typo(text, rng, lang)
    if lang == "jap":
        if rng.random() < rate:
            text = text.replace("。", rng.choice(["", "！", "…"]))
        return text
    if rng.random() < rate * 1.5:
        text = text.lower()
    if lang in ("esp", "por") and rng.random() < rate * 1.5:
        text = strip_accents(text).replace("¿", "").replace("¡", "")
    if rng.random() < rate:
        text = text.rstrip(".!?") + rng.choice(["", "", "!!", "??", "..."])
    return text
