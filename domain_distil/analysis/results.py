"""Collect ``results.json`` files (docs/formats.md) from sweep folders and account for every run.

A Table 8 cell is a mean over seeds, so a run that crashed or never ran silently changes what the
cell means: next to the usable scores come failed runs, missing runs (points of the expected grid
with no file) and duplicates (the same point found twice, e.g. a re-run sweep).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from domain_distil.classification import results as schema
from domain_distil.common.errors import UserInputError
from domain_distil.common.globs import expand_paths


class ResultsError(UserInputError):
    """Malformed results files; the message names every file and field at fault."""


@dataclass(frozen=True, order=True)
class RunKey:
    """One point of the grid: a classification job is identified by these five values."""

    task: str
    encoder: str
    lang: str
    freeze: bool
    seed: int

    def describe(self) -> str:
        mode = "frozen" if self.freeze else "fine-tuned"
        return f"task={self.task} encoder={self.encoder} lang={self.lang} {mode} seed={self.seed}"


@dataclass(frozen=True)
class RunRecord:
    key: RunKey
    path: Path
    status: str
    test: Mapping[str, float] | None
    error: str | None
    encoder_hash: str | None = None  # None: the job failed before its encoder was resolved


@dataclass
class Collection:
    """Usable runs plus an account of everything that is not usable."""

    ok: list[RunRecord]
    failed: list[RunRecord]
    missing: list[RunKey]
    # (kept, [ignored...]) for grid points found more than once.
    duplicates: list[tuple[RunRecord, list[RunRecord]]] = field(default_factory=list)
    grid: dict[str, dict[str, list]] = field(default_factory=dict)

    def scores(self, metric: str) -> dict[RunKey, float]:
        return {r.key: float(r.test[metric]) for r in self.ok if r.test is not None}


def find_results(dirs: Sequence[str | Path], filename: str = schema.RESULTS_FILE) -> list[Path]:
    """Every ``filename`` under the given folders, recursively, sorted; a missing folder is an error.

    Entries may be glob patterns (``multiruns/*/h3f9a1c2``, ``.../seed*``): see common/globs.py.
    """
    found: set[Path] = set()
    try:
        roots = expand_paths(dirs, "report.sweep_dirs")
    except FileNotFoundError as error:
        raise ResultsError(str(error)) from None
    for root in roots:
        if root.is_file() and root.name == filename:  # e.g. a pattern ending in /results.json
            found.add(root.resolve())
            continue
        if not root.is_dir():
            raise ResultsError(f"sweep folder {str(root)!r} does not exist or is not a folder")
        found.update(p.resolve() for p in root.rglob(filename) if p.is_file())
    return sorted(found)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(obj: Any, metrics: Sequence[str]) -> list[str]:
    """Problems with one parsed results.json, as ``field: what was expected`` strings."""
    if not isinstance(obj, dict):
        return [f"top level: expected a JSON object, got {type(obj).__name__}"]
    problems = [f"{k}: required key is missing" for k in schema.TOP_LEVEL_KEYS if k not in obj]
    for key in ("task", "lang"):
        if key in obj and not (isinstance(obj[key], str) and obj[key]):
            problems.append(f"{key}: expected a non-empty string, got {obj[key]!r}")
    encoder = obj.get("encoder")
    if "encoder" in obj:
        if not isinstance(encoder, dict):
            problems.append(f"encoder: expected an object with {list(schema.ENCODER_KEYS)}, got {encoder!r}")
        else:
            problems += [f"encoder.{k}: required key is missing" for k in schema.ENCODER_KEYS if k not in encoder]
            if "id" in encoder and not (isinstance(encoder["id"], str) and encoder["id"]):
                problems.append(f"encoder.id: expected a non-empty string, got {encoder['id']!r}")
    if "freeze" in obj and not isinstance(obj["freeze"], bool):
        problems.append(f"freeze: expected true or false, got {obj['freeze']!r}")
    if "seed" in obj and not (isinstance(obj["seed"], int) and not isinstance(obj["seed"], bool)):
        problems.append(f"seed: expected an integer, got {obj['seed']!r}")
    status = obj.get("status")
    if "status" in obj and status not in schema.STATUSES:
        problems.append(f"status: expected one of {list(schema.STATUSES)}, got {status!r}")
    if "error" in obj and obj["error"] is not None and not isinstance(obj["error"], str):
        problems.append(f"error: expected a string or null, got {obj['error']!r}")
    if status == "ok":
        test = obj.get("test")
        if not isinstance(test, dict):
            problems.append(f"test: expected an object with {list(metrics)} for status 'ok', got {test!r}")
        else:
            for metric in metrics:
                value = test.get(metric)
                # Scores are fractions (the report multiplies by 100); a 0-100 value is a unit bug.
                if not (_is_number(value) and -1e-6 <= value <= 1.0 + 1e-6):  # float32 rounding
                    problems.append(f"test.{metric}: expected a number in [0, 1], got {value!r}")
    return problems


def load_record(path: Path, metrics: Sequence[str]) -> tuple[RunRecord | None, list[str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            obj = json.load(handle)
    except json.JSONDecodeError as error:
        return None, [f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"]
    problems = validate(obj, metrics)
    if problems:
        return None, problems
    key = RunKey(obj["task"], obj["encoder"]["id"], obj["lang"], obj["freeze"], obj["seed"])
    return RunRecord(key, path, obj["status"], obj.get("test"), obj.get("error"), obj["encoder"]["hash"]), []


def load_records(paths: Iterable[Path], metrics: Sequence[str]) -> list[RunRecord]:
    """Parse and validate every file first, then raise once listing all bad files."""
    records, errors = [], []
    for path in paths:
        record, problems = load_record(path, metrics)
        if problems:
            errors.append(f"{path}:\n" + "\n".join(f"  - {p}" for p in problems))
        else:
            records.append(record)
    if errors:
        raise ResultsError(f"{len(errors)} malformed results file(s) (see docs/formats.md):\n" + "\n".join(errors))
    return records


def check_one_encoder_per_id(records: Sequence[RunRecord]) -> None:
    """Refuse an encoder id that names two encoders (two hashes): its rows would merge two models."""
    hashes: dict[str, dict[str, Path]] = defaultdict(dict)  # id -> hash -> first file with it
    for record in sorted(records, key=lambda r: str(r.path)):
        if record.encoder_hash is not None:
            hashes[record.key.encoder].setdefault(str(record.encoder_hash), record.path)
    for encoder_id, found in sorted(hashes.items()):
        if len(found) > 1:
            seen = ", ".join(f"hash {digest[:12]} ({path})" for digest, path in found.items())
            raise ResultsError(
                f"encoder id {encoder_id!r} names {len(found)} different encoders: {seen}; their results would "
                f"merge into one row. Give each its own id: classify again with encoder.id=<name> (encoder=distilled "
                f"without encoder.id names each student distilled-<corpus>-<key>), or report their sweeps separately")


def _resolve_duplicates(records: list[RunRecord]) -> tuple[list[RunRecord], list[tuple[RunRecord, list[RunRecord]]]]:
    """One record per grid point: an ok run beats a failed one, then the newest file wins."""
    by_key: dict[RunKey, list[RunRecord]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(record)
    kept, duplicates = [], []
    for key in sorted(by_key):
        group = sorted(by_key[key], key=lambda r: (r.status == "ok", os.stat(r.path).st_mtime, str(r.path)))
        kept.append(group[-1])
        if len(group) > 1:
            duplicates.append((group[-1], group[:-1]))
    return kept, duplicates


def _ordered(values: Iterable) -> list:
    return sorted(set(values), key=lambda v: (str(type(v)), v))


def expected_grid(records: Sequence[RunRecord], expected: Mapping[str, Sequence | None] | None) -> dict[str, dict[str, list]]:
    """Per task: the encoders, langs, seeds and freeze values every combination of which should exist.

    Axes given in ``expected`` are taken as is; the others are inferred as the union of the values
    seen for that task (so a seed that failed everywhere still counts, but a seed that was never
    launched anywhere can only be detected by listing the seeds in the config).
    """
    expected = dict(expected or {})
    unknown = set(expected) - {"encoders", "langs", "seeds", "freeze", "tasks"}
    if unknown:
        raise ResultsError(f"report.expected: unknown axes {sorted(unknown)}; use encoders, langs, seeds, freeze, tasks")
    tasks = list(expected.get("tasks") or _ordered(r.key.task for r in records))
    grid = {}
    for task in tasks:
        mine = [r.key for r in records if r.key.task == task]
        grid[task] = {
            "encoders": list(expected.get("encoders") or _ordered(k.encoder for k in mine)),
            "langs": list(expected.get("langs") or _ordered(k.lang for k in mine)),
            "seeds": [int(s) for s in (expected.get("seeds") or _ordered(k.seed for k in mine))],
            "freeze": [bool(f) for f in (expected.get("freeze") or _ordered(k.freeze for k in mine))],
        }
    return grid


def collect(dirs: Sequence[str | Path], metrics: Sequence[str] = schema.METRIC_KEYS,
            expected: Mapping[str, Sequence | None] | None = None) -> Collection:
    """Load, validate and account for every results.json under ``dirs``."""
    paths = find_results(dirs)
    if not paths:
        raise ResultsError(f"no {schema.RESULTS_FILE} found under {[str(d) for d in dirs]}")
    loaded = load_records(paths, metrics)
    check_one_encoder_per_id(loaded)
    records, duplicates = _resolve_duplicates(loaded)
    grid = expected_grid(records, expected)
    present = {r.key for r in records}
    points = (RunKey(task, *point) for task, axes in grid.items()
              for point in product(axes["encoders"], axes["langs"], axes["freeze"], axes["seeds"]))
    return Collection(ok=[r for r in records if r.status == "ok"], failed=[r for r in records if r.status != "ok"],
                      missing=sorted(key for key in points if key not in present), duplicates=duplicates, grid=grid)
