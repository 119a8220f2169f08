"""Table 7: how close a homonym's sentence sits to the same sentence with a general or a technical
neighbour, per encoder (paper §6 and Appendix A).

Each word ("Python") has a general and a technical template, each filled once with the word and
once with a neighbour ("snake" / "PHP"); we report the cosine of the two mean-pooled sentence
vectors. A domain-adapted encoder should move the technical pair closer and the general one apart.

Note on the paper's numbers: its Table 7 is captioned "cosine similarity" but its values are
around 0.01, the magnitude of a cosine *distance* (1 - cos) between two sentences that differ in
one word; the table therefore also offers 1 - cos (``show_distance``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from domain_distil.analysis.encoders import EncoderSpec
from domain_distil.encoders import embed, load_encoder

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "homonyms.json"
SENSES = ("general", "technical")
PLACEHOLDER = "{}"


@dataclass(frozen=True)
class Homonym:
    word: str
    neighbors: dict[str, str]  # sense -> neighbour
    templates: dict[str, str]  # sense -> sentence template with one "{}"

    def sentences(self, sense: str) -> tuple[str, str]:
        """The sentence with the word and the same sentence with the neighbour."""
        template = self.templates[sense]
        return template.replace(PLACEHOLDER, self.word), template.replace(PLACEHOLDER, self.neighbors[sense])


def load_homonyms(path: str | Path | None = None) -> list[Homonym]:
    """Read and validate the sentence pairs (default: the paper's appendix)."""
    path = Path(path) if path is not None else DEFAULT_DATA
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("words") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected an object with a non-empty list 'words'")
    homonyms = []
    for i, entry in enumerate(entries):
        where = f"{path}: words[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("word"), str) or not entry["word"]:
            raise ValueError(f"{where}.word: expected a non-empty string")
        neighbors, templates = {}, {}
        for sense in SENSES:
            part = entry.get(sense)
            if not isinstance(part, dict) or not part.get("neighbor") or not isinstance(part.get("template"), str):
                raise ValueError(f"{where}.{sense}: expected {{neighbor: str, template: str}}, got {part!r}")
            if part["template"].count(PLACEHOLDER) != 1:
                raise ValueError(f"{where}.{sense}.template: expected exactly one '{PLACEHOLDER}', got {part['template']!r}")
            neighbors[sense], templates[sense] = part["neighbor"], part["template"]
        homonyms.append(Homonym(entry["word"], neighbors, templates))
    return homonyms


def all_sentences(homonyms: list[Homonym]) -> list[str]:
    return [s for h in homonyms for sense in SENSES for s in h.sentences(sense)]


def cosine_pairs(
    model: torch.nn.Module, tokenizer: Any, pairs: list[tuple[str, str]], max_length: int = 128
) -> list[float]:
    """Cosine similarity of the mean-pooled embeddings of each (a, b) sentence pair."""
    vectors = embed(model, tokenizer, [s for pair in pairs for s in pair], max_length)
    first, second = vectors[0::2], vectors[1::2]
    # float64 so values like 0.99995 keep their last digits (the differences are tiny).
    return torch.nn.functional.cosine_similarity(first.double(), second.double(), dim=-1).tolist()


def homonym_cosines(
    encoders: list[EncoderSpec], homonyms: list[Homonym], max_length: int = 128
) -> dict[str, dict[str, dict[str, float]]]:
    """encoder id -> word -> sense -> cosine similarity."""
    pairs = [h.sentences(sense) for h in homonyms for sense in SENSES]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for spec in encoders:
        model, tokenizer = load_encoder(spec.name_or_path)
        values = iter(cosine_pairs(model, tokenizer, pairs, max_length))
        table[spec.id] = {h.word: {sense: next(values) for sense in SENSES} for h in homonyms}
        del model
    return table


def table7_rows(
    cosines: dict[str, dict[str, dict[str, float]]], homonyms: list[Homonym], distance: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Table 7's layout: Word | General Neighbor | one column per encoder | Technical Neighbor | ..."""
    encoders = list(cosines)
    kind = "1-cos" if distance else "cos"
    header = ["Word", "General Neighbor", *(f"{kind} {e}" for e in encoders), "Technical Neighbor", *(f"{kind} {e}" for e in encoders)]
    rows = []
    for h in homonyms:
        row = [h.word]
        for sense in SENSES:
            row.append(h.neighbors[sense])
            for e in encoders:
                value = cosines[e][h.word][sense]
                row.append(f"{1.0 - value if distance else value:.5f}")
        rows.append(row)
    return header, rows

