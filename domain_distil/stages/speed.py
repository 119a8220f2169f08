"""The speed stage, Table 5 (``task=speed`` documents it): ``measure(speed_request(cfg))`` writes
speed.md, speed.json and the ONNX exports to the request's ``output_dir``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from transformers import AutoTokenizer

from domain_distil.analysis.coverage import coverage_against_first
from domain_distil.analysis.encoders import EncoderSpec, parse_encoders, teacher_resolver
from domain_distil.analysis.homonyms import all_sentences, load_homonyms
from domain_distil.analysis.messages import read_texts, realistic_messages
from domain_distil.analysis.render import markdown_table, print_table
from domain_distil.analysis.speed import SpeedSettings, benchmark_encoder, cpu_threads, machine_identity
from domain_distil.analysis.table5 import coverage_table, table5
from domain_distil.common.io import atomic_open, write_json
from domain_distil.common.loggers import to_container
from domain_distil.common.provenance import git_commit
from domain_distil.serving.quantize import int8_calibration_texts, int8_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeedRequest:
    encoders: list[EncoderSpec]
    settings: SpeedSettings
    realistic: Callable[[Any], list]  # a tokenizer -> the realistic messages it is timed on
    realistic_record: dict[str, Any]  # where they came from, for speed.json
    held_out: list[str]  # the texts the int8 / ONNX variants must agree on
    coverage_texts: list[str]
    output_dir: Path


_TEXT_COLUMNS = ("Model", "Note")  # left-aligned; the figures are right-aligned


def measure(request: SpeedRequest) -> dict[str, Any]:
    encoders, settings, output_dir = request.encoders, request.settings, request.output_dir
    # Cheap, and a tokenizer that does not load fails here rather than after the timing.
    tokenizers = [(spec.id, AutoTokenizer.from_pretrained(spec.name_or_path)) for spec in encoders]
    coverages = coverage_against_first(tokenizers, request.coverage_texts)
    # Wide enough for the full table when the output is a log file rather than a terminal.
    console = Console(width=None if sys.stdout.isatty() else 160)
    rows = []
    with cpu_threads(settings.threads), console.status("timing") as status:
        for spec in encoders:
            rows += benchmark_encoder(spec, settings, request.realistic, request.held_out, output_dir / "onnx",
                                      lambda msg: status.update(f"timing {msg}"))
    header, body = table5(rows, settings.lengths)
    title = f"Table 5: batch size 1, {settings.threads} CPU thread(s), median of {settings.repeats} repeats"
    print_table(console, title, header, body, _TEXT_COLUMNS)
    for row in rows:
        if not row.available:
            log.warning("%s: %s", row.model, row.note)
    sections = [markdown_table(header, body)]
    if coverages:
        cov_header, cov_body = coverage_table(encoders[0].id, coverages)
        title = f"Tokenizer coverage on {len(request.coverage_texts)} held-out texts"
        print_table(console, title, cov_header, cov_body, _TEXT_COLUMNS)
        sections.append(f"{title}\n\n" + markdown_table(cov_header, cov_body))
    with atomic_open(output_dir / "speed.md") as handle:
        handle.write("\n\n".join(sections))
    record = {
        "rows": [asdict(r) for r in rows],
        "settings": asdict(settings),
        "coverage": {"reference": encoders[0].id, "texts": len(request.coverage_texts),
                     "encoders": {name: asdict(c) for name, c in coverages.items()}},
        "realistic": request.realistic_record,
        "machine": machine_identity(),
        "git": git_commit(),
    }
    write_json(output_dir / "speed.json", record)
    return record


# Config -> typed arguments, for the speed task and the demo's Table 5.


def speed_request(cfg: DictConfig) -> SpeedRequest:
    """The ``speed`` group (its ``{teacher: true}`` encoder is the ``teacher`` group) and the ``int8``
    group, which the int8 row uses as serving does; texts are read here, no model is."""
    sc = cfg.speed
    encoders = parse_encoders(to_container(sc.encoders), "speed.encoders", teacher_resolver(cfg))
    int8, calibration = int8_settings(cfg), int8_calibration_texts(cfg)
    lengths = tuple(int(n) for n in sc.lengths)
    if not lengths:
        raise ValueError("speed.lengths: give at least one message length")
    if int(sc.repeats) < 1 or int(sc.warmup) < 0 or int(sc.threads) < 1:
        raise ValueError(f"speed: need repeats >= 1, warmup >= 0, threads >= 1; got {sc.repeats}, {sc.warmup}, {sc.threads}")
    only = sc.variants.get("encoders")
    settings = SpeedSettings(
        lengths=lengths, repeats=int(sc.repeats), warmup=int(sc.warmup), threads=int(sc.threads),
        int8=bool(sc.variants.int8), onnx=bool(sc.variants.onnx),
        variants_for=None if only is None else tuple(str(e) for e in only), int8_settings=int8,
        int8_calibration=tuple(calibration or ()),
    )
    unknown = sorted(set(settings.variants_for or ()) - {e.id for e in encoders})
    if unknown:
        raise ValueError(f"speed.variants.encoders: {unknown} are not in speed.encoders ({[e.id for e in encoders]})")
    rc = sc.realistic
    texts = read_texts(rc.texts) if rc.get("texts") else None
    held_out = read_texts(sc.agreement_texts) if sc.get("agreement_texts") else all_sentences(load_homonyms())

    def realistic(tokenizer: Any) -> list:
        return realistic_messages(
            tokenizer, texts, int(rc.n_messages), float(rc.lognormal_mu), float(rc.lognormal_sigma),
            int(rc.max_length), int(rc.seed),
        )

    return SpeedRequest(
        encoders=encoders, settings=settings, realistic=realistic,
        realistic_record={"source": str(rc.texts) if texts else "lognormal", **to_container(rc)},
        held_out=held_out,
        coverage_texts=read_texts(sc.coverage_texts) if sc.get("coverage_texts") else held_out,
        output_dir=Path(cfg.paths.output_dir),
    )
