"""``task=predict``: every relevant head of a bundle over a JSONL or CSV file, streamed.

    python run.py task=predict predict.bundle=outputs/bundle predict.input=data/messages.jsonl
    python run.py task=predict predict.bundle=... predict.input=posts.csv predict.tasks=td_tags predict.backend=int8

Every row is checked first (errors name file and line), then rows are predicted ``chunk_rows`` at a
time (flat memory) into ``<output>.partial``, renamed to ``<output>`` at the end, so ``<output>`` is
complete or absent and an interrupted run resumes; input and output formats: docs/serving.md.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from domain_distil.common.errors import UserInputError
from domain_distil.common.hashing import hash_object
from domain_distil.common.io import read_json, write_json
from domain_distil.common.records import iter_records
from domain_distil.serving.bundle_load import read_manifest
from domain_distil.serving.quantize import int8_calibration_texts, int8_settings, predictor_from_config

log = logging.getLogger(__name__)


class InputFileError(UserInputError):
    """A predict input row does not have what is expected; the message names file and line."""


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for a .jsonl or .csv file; CSV line numbers count the header as line 1."""
    if path.suffix not in (".jsonl", ".csv"):
        raise InputFileError(f"{path}: expected a .jsonl or .csv file")
    yield from iter_records(path, InputFileError)


def check_row(path: Path, number: int, row: dict[str, Any], pc: DictConfig, langs: set[str]) -> None:
    text = row.get(pc.text_field)
    if not isinstance(text, str) or not text.strip():
        raise InputFileError(f"{path}:{number}: field {pc.text_field!r} must be a non-empty string, got {text!r}")
    lang = row.get(pc.lang_field) if pc.lang_field else None
    if lang not in (None, "") and lang not in langs:
        raise InputFileError(f"{path}:{number}: {pc.lang_field}={lang!r} has no head in the bundle (languages: {sorted(langs)})")


def _chunks(path: Path, size: int, skip: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    rows = itertools.islice(iter_rows(path), skip, None)
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def _complete_lines(partial: Path) -> int:
    """Complete lines in ``partial``; a torn last line (killed mid-write) is cut off."""
    data = partial.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with open(partial, "r+b") as handle:
            handle.truncate(keep)
    return data[:keep].count(b"\n")


def run(cfg: DictConfig) -> dict[str, Any]:
    pc = cfg.predict
    if not pc.bundle or not pc.input:
        raise ValueError("task=predict needs predict.bundle=<bundle folder> and predict.input=<.jsonl or .csv file>")
    source = Path(pc.input)
    if not source.is_file():
        raise FileNotFoundError(f"predict.input={source} is not a file")
    output = Path(pc.output) if pc.output else Path(cfg.paths.output_dir) / f"{source.stem}.predictions.jsonl"
    manifest = read_manifest(pc.bundle)
    langs = {h["lang"] for h in manifest["heads"]}

    # Pass 1: validate every row before any model work.
    total = 0
    for number, row in iter_rows(source):
        check_row(source, number, row, pc, langs)
        total += 1
    if total == 0:
        raise InputFileError(f"{source}: no rows")

    stat = source.stat()
    options = OmegaConf.to_container(pc, resolve=True)
    calibration = int8_calibration_texts(cfg) if pc.backend == "int8" else None
    key = hash_object({"bundle": manifest["encoder"]["hash"], "heads": [h["sha256"] for h in manifest["heads"]],
                       "input": [str(source.resolve()), stat.st_size, stat.st_mtime_ns],
                       "options": {k: v for k, v in options.items() if k not in ("resume", "threads", "chunk_rows")},
                       # int8 settings change the outputs: a partial file from other settings is not resumed
                       **({"int8": int8_settings(cfg).effective(), "int8_calibration": calibration}
                          if pc.backend == "int8" else {})})
    partial, sidecar = output.with_name(output.name + ".partial"), output.with_name(output.name + ".partial.json")
    done = 0
    if pc.resume and partial.is_file() and sidecar.is_file() and read_json(sidecar).get("key") == key:
        done = _complete_lines(partial)
        log.info("resuming %s after %d of %d rows", partial, done, total)
    else:
        partial.unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(sidecar, {"key": key, "input": str(source), "bundle": str(pc.bundle)})

    predictor = predictor_from_config(cfg, pc, calibration)
    predictor.select(pc.langs, pc.tasks)  # unknown filter values fail here, before the loop

    with open(partial, "a", encoding="utf-8") as sink, tqdm(total=total, initial=done, unit="row", desc="predict") as bar:
        for chunk in _chunks(source, int(pc.chunk_rows), done):
            texts = [row[pc.text_field] for _, row in chunk]
            row_langs = [(row.get(pc.lang_field) or None) if pc.lang_field else None for _, row in chunk]
            outputs = predictor.predict(texts, pc.langs, pc.tasks, text_langs=row_langs)
            for (number, row), lang, preds in zip(chunk, row_langs, outputs, strict=True):
                record: dict[str, Any] = {"line": number}
                if pc.id_field and row.get(pc.id_field) not in (None, ""):
                    record["id"] = row[pc.id_field]
                if lang is not None:
                    record["lang"] = lang
                record["predictions"] = preds
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            bar.update(len(chunk))
    os.replace(partial, output)
    sidecar.unlink(missing_ok=True)
    log.info("%d rows -> %s (%d encoder rows)", total, output, predictor.encoded_rows)
    return {"output": str(output), "rows": total, "resumed_after": done, "encoded_rows": predictor.encoded_rows}
