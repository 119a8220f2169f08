"""``task=homonyms``: Table 7, homonym cosine similarities per encoder, printed and written to
``homonyms.md`` and ``homonyms.json`` (every value and the exact sentences).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from domain_distil.analysis.encoders import parse_encoders, teacher_resolver
from domain_distil.analysis.homonyms import (
    SENSES,
    homonym_cosines,
    load_homonyms,
    table7_rows,
)
from domain_distil.analysis.render import markdown_table, print_table
from domain_distil.common.io import atomic_open, write_json
from domain_distil.common.provenance import git_commit

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    hc = cfg.homonyms
    encoders = parse_encoders(
        OmegaConf.to_container(hc.encoders, resolve=True), "homonyms.encoders", teacher_resolver(cfg)
    )
    homonyms = load_homonyms(hc.get("data"))  # validated before any model is loaded
    cosines = homonym_cosines(encoders, homonyms, int(hc.max_length))

    console = Console()
    sections = [("Table 7: cosine similarity (mean-pooled embeddings)", False)]
    if hc.get("show_distance", True):
        sections.append(("Table 7: cosine distance 1 - cos (the scale of the paper's numbers)", True))
    markdown = []
    for title, distance in sections:
        header, rows = table7_rows(cosines, homonyms, distance)
        print_table(console, title, header, rows, ("Word", "General Neighbor", "Technical Neighbor"))
        markdown += [f"### {title}", "", markdown_table(header, rows)]

    output_dir = Path(cfg.paths.output_dir)
    with atomic_open(output_dir / "homonyms.md") as handle:
        handle.write("\n".join(markdown))
    record = {
        "encoders": [{"id": e.id, "name_or_path": e.name_or_path} for e in encoders],
        "cosine": cosines,
        "sentences": {h.word: {s: list(h.sentences(s)) for s in SENSES} for h in homonyms},
        "git": git_commit(),
    }
    write_json(output_dir / "homonyms.json", record)
    log.info("homonym table written to %s", output_dir)
    return record
