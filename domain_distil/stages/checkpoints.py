"""Which checkpoint a distillation resumes from, and what to say when there is none.

A work folder (``<cache>/students/<key>.work``) is named by the hash of everything that changes the
weights, so a restart with *any* recipe change looks elsewhere; its ``run.json`` lets ``ckpt_path=last``
name the runs of the same teacher and corpus and what differs instead of silently training from scratch
(docs/distillation.md). Every refusal is a ``ConfigError``: one line, exit status 2.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callbacks.resumable_checkpoint import LAST_CHECKPOINT, read_last_record
from domain_distil.artifacts.manifest import setting_differences
from domain_distil.common.errors import ConfigError
from domain_distil.common.io import read_json, write_json

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
CHECKPOINTS_DIR = "checkpoints"


class ResumeCheckpointNotFound(ConfigError, FileNotFoundError):
    """``ckpt_path`` names nothing to resume from (still a ``FileNotFoundError`` for callers that catch that)."""


class CorruptCheckpoint(ConfigError):
    """``ckpt_path`` names a file that is not a complete checkpoint (cut short or damaged)."""


def write_run_record(
    work_dir: str | Path,
    identity: Mapping[str, Any],
    recipe: Mapping[str, Any],
    corpus_reference: Mapping[str, Any] | None = None,
) -> None:
    """Write ``run.json`` (temp file + rename). ``identity`` must hold ``teacher`` and ``corpus`` (its
    content hash); ``corpus_reference`` is the corpus as configured, which survives a content change."""
    payload = {"identity": dict(identity), "recipe": dict(recipe), "corpus_reference": corpus_reference}
    previous = read_run_record(work_dir)
    payload["created"] = (previous or {}).get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(Path(work_dir) / RUN_RECORD, payload)


def read_run_record(work_dir: str | Path) -> dict[str, Any] | None:
    path = Path(work_dir) / RUN_RECORD
    return read_json(path) if path.exists() else None


def _settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe and effective-run settings of a run record: what a sibling run may differ in."""
    return {"recipe": record.get("recipe") or {}, "effective": (record.get("identity") or {}).get("effective") or {}}


def _same_corpus(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
    """The same tokens (content hash), or the same configured corpus whose content has changed."""
    if (mine.get("identity") or {}).get("corpus") == (theirs.get("identity") or {}).get("corpus"):
        return True
    reference = mine.get("corpus_reference")
    return reference is not None and reference == theirs.get("corpus_reference")


def sibling_runs(work_dir: str | Path, mine: Mapping[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """Other work folders next to ``work_dir`` with the teacher and corpus of ``mine`` (a ``run.json`` record),
    oldest first."""
    work_dir = Path(work_dir)
    teacher = (mine.get("identity") or {}).get("teacher")
    found = []
    for folder in sorted(work_dir.parent.glob("*.work")) if work_dir.parent.is_dir() else []:
        record = read_run_record(folder)
        if folder == work_dir or record is None:
            continue
        if (record.get("identity") or {}).get("teacher") == teacher and _same_corpus(mine, record):
            found.append((folder, record))
    return sorted(found, key=lambda item: str(item[1].get("created", "")))


def _describe_sibling(folder: Path, record: Mapping[str, Any], mine: Mapping[str, Any]) -> str:
    last = read_last_record(folder / CHECKPOINTS_DIR)
    has_last = (folder / CHECKPOINTS_DIR / LAST_CHECKPOINT).exists()
    where = f"last.ckpt at step {last.get('step')}" if has_last and last else "last.ckpt" if has_last else "no last.ckpt"
    differences = setting_differences(_settings(mine), _settings(record))  # "field: theirs -> mine"
    theirs_corpus, my_corpus = (record.get("identity") or {}).get("corpus"), (mine.get("identity") or {}).get("corpus")
    if theirs_corpus != my_corpus:
        differences.insert(0, f"the corpus content differs from the run's (corpus {theirs_corpus} -> {my_corpus})")
    return f"\n  - {folder} ({where}, created {record.get('created')}); differs in:" + "".join(
        f"\n      {line}" for line in differences or ["nothing in the recipe (same settings)"]
    )


def check_checkpoint_file(path: Path, ckpt_path: str) -> None:
    """Refuse a checkpoint that is cut short or damaged, before any weight is loaded.

    A PyTorch checkpoint is a zip archive with a CRC per member; ``torch.load`` does not check them,
    so a flipped byte would load silently and a truncated file fails deep inside Lightning.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        problem = f"member {damaged} fails its checksum" if damaged is not None else None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        problem = f"not a complete PyTorch checkpoint: {error}"
    if problem is None:
        return
    others = sorted(p.name for p in path.parent.glob("*.ckpt") if p.name != path.name and not p.samefile(path))
    raise CorruptCheckpoint(
        f"ckpt_path={ckpt_path}: {path} is cut short or damaged ({problem}). "
        + (f"Other checkpoints in {path.parent}: {', '.join(others)}; pass one as ckpt_path=<file>, or start "
           if others else "Start ")
        + "afresh without ckpt_path."
    )


def resolve_resume_checkpoint(
    ckpt_path: str | None,
    work_dir: str | Path,
    identity: Mapping[str, Any],
    recipe: Mapping[str, Any],
    corpus_reference: Mapping[str, Any] | None = None,
) -> str | None:
    """The checkpoint file to pass to ``Trainer.fit(ckpt_path=...)``, checked before any weight is loaded.

    ``None``: start fresh (warns when this run folder already holds an interrupted run).
    ``"last"``: this run folder's ``last.ckpt``, or :class:`ResumeCheckpointNotFound` listing the run
    folders of the same teacher and corpus and which settings differ. Anything else: an existing file.
    A file that is cut short or damaged raises :class:`CorruptCheckpoint`.
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
        check_checkpoint_file(path, str(ckpt_path))
        return str(path)
    if last.exists():
        check_checkpoint_file(last, "last")
        record = read_last_record(last.parent) or {}
        log.info("Resuming from %s (optimizer step %s, written on %s)", last, record.get("step"), record.get("reason"))
        return str(last)
    mine = {"identity": dict(identity), "recipe": dict(recipe), "corpus_reference": corpus_reference}
    siblings = sibling_runs(work_dir, mine)
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
