"""Which checkpoint a distillation resumes from, and what to say when there is none.

A run's work folder (``<cache>/students/<key>.work``) is named by the hash of everything that
changes the weights, so a run restarted with *any* recipe change looks in another folder. Each
work folder therefore carries ``run.json``: the identity the key hashes (teacher, corpus, recipe
hash, effective run) and the recipe itself. When ``ckpt_path=last`` finds no ``last.ckpt``, the
error lists the work folders of the same teacher and corpus and which settings differ, instead
of silently training from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callbacks.resumable_checkpoint import LAST_CHECKPOINT, read_last_record

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
CHECKPOINTS_DIR = "checkpoints"


class ResumeCheckpointNotFound(FileNotFoundError):
    """``ckpt_path`` names nothing this run can resume from; the message says what exists instead."""


def write_run_record(work_dir: str | Path, identity: Mapping[str, Any], recipe: Mapping[str, Any]) -> Path:
    """Write ``run.json`` (temp file + rename). ``identity`` must hold ``teacher`` and ``corpus``."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / RUN_RECORD
    payload = {"identity": dict(identity), "recipe": dict(recipe)}
    previous = read_run_record(work_dir)
    payload["created"] = (previous or {}).get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    temp = path.with_name(f".{RUN_RECORD}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temp, path)
    return path


def read_run_record(work_dir: str | Path) -> dict[str, Any] | None:
    path = Path(work_dir) / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def run_differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """``field: theirs -> mine`` for every recipe or effective-run setting that differs."""

    def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
        effective = (record.get("identity") or {}).get("effective")
        return _flatten({"recipe": record.get("recipe") or {}, "effective": effective or {}})

    a, b = comparable(mine), comparable(theirs)
    missing = object()
    return [
        f"{key}: {b.get(key, '<unset>')!r} -> {a.get(key, '<unset>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]


def sibling_runs(work_dir: str | Path, identity: Mapping[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """Other work folders next to ``work_dir`` with the same teacher and corpus, oldest first."""
    work_dir = Path(work_dir)
    found = []
    for folder in sorted(work_dir.parent.glob("*.work")) if work_dir.parent.is_dir() else []:
        record = read_run_record(folder)
        if folder == work_dir or record is None:
            continue
        theirs = record.get("identity") or {}
        if theirs.get("teacher") == identity.get("teacher") and theirs.get("corpus") == identity.get("corpus"):
            found.append((folder, record))
    return sorted(found, key=lambda item: str(item[1].get("created", "")))


def _describe_sibling(folder: Path, record: Mapping[str, Any], mine: Mapping[str, Any]) -> str:
    last = read_last_record(folder / CHECKPOINTS_DIR)
    has_last = (folder / CHECKPOINTS_DIR / LAST_CHECKPOINT).exists()
    where = f"last.ckpt at step {last.get('step')}" if has_last and last else "last.ckpt" if has_last else "no last.ckpt"
    differences = run_differences(mine, record) or ["nothing in the recipe (same settings)"]
    return f"\n  - {folder} ({where}, created {record.get('created')}); differs in:" + "".join(
        f"\n      {line}" for line in differences
    )


def resolve_resume_checkpoint(
    ckpt_path: str | None, work_dir: str | Path, identity: Mapping[str, Any], recipe: Mapping[str, Any]
) -> str | None:
    """The checkpoint file to pass to ``Trainer.fit(ckpt_path=...)``, checked before any weight is loaded.

    ``None``: start fresh (warns when this run folder already holds an interrupted run).
    ``"last"``: this run folder's ``last.ckpt``, or :class:`ResumeCheckpointNotFound` listing the run
    folders of the same teacher and corpus and which settings differ. Anything else: an existing file.
    """
    work_dir = Path(work_dir)
    last = work_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT
    if ckpt_path is None or str(ckpt_path) == "":
        if last.exists():
            log.warning(
                "%s holds an interrupted run of this recipe; starting over. Pass ckpt_path=last to continue it.", last
            )
        return None
    if str(ckpt_path) != "last":
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise ResumeCheckpointNotFound(f"ckpt_path={ckpt_path}: no such checkpoint file")
        return str(path)
    if last.exists():
        record = read_last_record(last.parent) or {}
        log.info("Resuming from %s (optimizer step %s, written on %s)", last, record.get("step"), record.get("reason"))
        return str(last)
    mine = {"identity": dict(identity), "recipe": dict(recipe)}
    siblings = sibling_runs(work_dir, identity)
    listing = "".join(_describe_sibling(folder, record, mine) for folder, record in siblings)
    raise ResumeCheckpointNotFound(
        f"ckpt_path=last: this recipe's run folder {work_dir} has no {CHECKPOINTS_DIR}/{LAST_CHECKPOINT}, so there is "
        "nothing to resume (the folder is named by the hash of the recipe, so any changed setting looks elsewhere). "
        + (
            f"Runs of the same teacher and corpus (the arrow shows their value -> this run's):{listing}\n"
            "Resume one of them by restoring its settings, or start this recipe afresh without ckpt_path."
            if siblings
            else "No other run of this teacher and corpus exists either; start afresh without ckpt_path."
        )
    )
