"""``results.json``: one record per classification job (schema in docs/formats.md).

The report stage reads these files back across a multirun, so the schema is checked when the file
is written (``validate_results``) rather than discovered broken when the table is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from domain_distil.common.io import write_json
from domain_distil.common.provenance import git_commit

RESULTS_FILE = "results.json"
TOP_LEVEL_KEYS = ("task", "lang", "encoder", "freeze", "seed", "test", "best_val", "timings", "git",
                  "config", "status", "error")
ENCODER_KEYS = ("id", "name_or_path", "hash")
METRIC_KEYS = ("f1", "precision", "recall")
STATUSES = ("ok", "failed")


def build_results(*, task: str, lang: str, encoder: Mapping[str, Any], freeze: bool, seed: int | None,
                  test: Mapping[str, float] | None, best_val: Mapping[str, Any] | None,
                  timings: Mapping[str, float], config: Mapping[str, Any], status: str = "ok",
                  error: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a record; ``extra`` holds optional fields (threshold, split sizes, cache stats)."""
    record: dict[str, Any] = {
        "task": task,
        "lang": lang,
        "encoder": {key: encoder.get(key) for key in ENCODER_KEYS},
        "freeze": bool(freeze),
        "seed": seed,
        "test": dict(test) if test is not None else None,
        "best_val": dict(best_val) if best_val is not None else None,
        "timings": dict(timings),
        "git": git_commit(),
        "config": dict(config),
        "status": status,
        "error": error,
    }
    record.update(extra or {})
    return record


def validate_results(record: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field that breaks the schema."""
    missing = [key for key in TOP_LEVEL_KEYS if key not in record]
    if missing:
        raise ValueError(f"results.json lacks {missing}")
    if record["status"] not in STATUSES:
        raise ValueError(f"results.json status must be 'ok' or 'failed', got {record['status']!r}")
    if not isinstance(record["encoder"], Mapping) or any(k not in record["encoder"] for k in ENCODER_KEYS):
        raise ValueError(f"results.json encoder must have {ENCODER_KEYS}")
    if record["status"] == "failed":
        if not record["error"]:
            raise ValueError("a failed results.json must say why (error)")
        return
    for section, keys in (("test", METRIC_KEYS), ("best_val", (*METRIC_KEYS, "epoch"))):
        values = record[section]
        if not isinstance(values, Mapping) or any(k not in values for k in keys):
            raise ValueError(f"results.json {section} must have {keys}, got {values!r}")
        for key in METRIC_KEYS:
            if not -1e-6 <= float(values[key]) <= 1.0 + 1e-6:  # float32 metrics carry ~7 digits
                raise ValueError(f"results.json {section}.{key}={values[key]} is not in [0, 1]")


def write_results(output_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Validate and write ``<output_dir>/results.json`` atomically."""
    validate_results(record)
    path = Path(output_dir) / RESULTS_FILE
    write_json(path, dict(record))
    return path
