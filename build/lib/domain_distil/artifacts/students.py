"""Distilled students as artifacts: their identity, their manifest, and finding one by what made it.

A student's **key** (its folder name under ``<cache>/students/``) hashes everything that changes its
weights: the teacher's identity, the corpus content, the student layout, the recipe, and the
effective run (precision, world size, global batch). Its **lookup** record says what a later stage
can know without re-running anything: the teacher, the corpus *reference* (the configured corpus,
paths made absolute, never its content, so a classification job never reads the corpus) and the
recipe hash. ``encoder=distilled`` matches on the lookup record; several matches (say, a CPU and a
bf16 8-GPU student of the same recipe) are an error that lists them and how to pick one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain_distil.artifacts.manifest import read_manifest
from domain_distil.common.hashing import hash_object, memoised_model_hash

STUDENTS_DIR = "students"
FORMAT_VERSION = 2

# distill.* keys that change how a run is executed or stored, never its weights.
NOT_PART_OF_THE_RECIPE = frozenset({"num_workers", "checkpoint_every_n_steps", "keep_checkpoints", "callbacks"})
NOT_PART_OF_THE_RECIPE_TRAINER = frozenset({"log_every_n_steps"})
# corpus.* keys that change how shards are built or where they come from, never which text they hold.
NOT_PART_OF_THE_CORPUS = frozenset({"num_workers", "shard_tokens"})


class StudentLookupError(LookupError):
    """No student, or more than one, matches what a stage asked for; the message lists candidates."""


@dataclass(frozen=True)
class StudentArtifact:
    """An exported student: a transformers folder plus ``manifest.json``."""

    path: Path
    manifest: dict[str, Any]

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def effective(self) -> dict[str, Any]:
        return dict(self.manifest.get("effective") or {})

    def summary(self) -> str:
        eff = self.effective
        lookup = self.manifest.get("lookup") or {}
        corpus = (lookup.get("corpus") or {}).get("reference") or {}
        where = corpus.get("dir") or corpus.get("files") or corpus.get("name")
        return (
            f"{self.path}  teacher={self.manifest.get('teacher')}  corpus={where}  "
            f"recipe={str(lookup.get('recipe_hash', '?'))[:12]}  precision={eff.get('precision')}  "
            f"world_size={eff.get('world_size')}  global_batch={eff.get('global_batch')}  "
            f"created={self.manifest.get('created')}"
        )


def students_root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / STUDENTS_DIR


def teacher_identity(name_or_path: str, revision: str | None, cache_dir: str | Path | None) -> dict[str, Any]:
    """A local teacher folder is identified by its content (memoised); a hub teacher by name + revision."""
    if Path(name_or_path).is_dir():
        return {"path_hash": memoised_model_hash(name_or_path, cache_dir)}
    return {"name": name_or_path, "revision": revision}


def _absolute(value: Any) -> Any:
    return str(Path(os.path.expanduser(str(value))).resolve()) if value not in (None, "") else value


def corpus_reference(corpus: Mapping[str, Any]) -> dict[str, Any]:
    """The configured corpus as an identity: every key that decides its text, folders made absolute.

    Computed from the configuration alone (nothing is listed or read), so it still matches after
    the corpus folder was moved away or deleted.
    """
    ref = {k: v for k, v in corpus.items() if k not in NOT_PART_OF_THE_CORPUS}
    if ref.get("dir"):
        ref["dir"] = _absolute(ref["dir"])
    files = ref.get("files")
    if isinstance(files, Mapping):
        ref["files"] = {
            lang: [_absolute(p) for p in (paths if isinstance(paths, list | tuple) else [paths])]
            for lang, paths in sorted(files.items())
        }
    for key in ("prepared_dir", "data_dir"):
        if ref.get(key):
            ref[key] = _absolute(ref[key])
    return ref


def recipe_identity(
    distill: Mapping[str, Any], student: Mapping[str, Any], teacher_head: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The distillation recipe, student layout and teacher-head fit, minus keys that never change weights."""
    recipe = {k: v for k, v in distill.items() if k not in NOT_PART_OF_THE_RECIPE}
    if isinstance(recipe.get("trainer"), Mapping):
        recipe["trainer"] = {k: v for k, v in recipe["trainer"].items() if k not in NOT_PART_OF_THE_RECIPE_TRAINER}
    identity = {"distill": recipe, "student": dict(student)}
    if teacher_head and str(teacher_head.get("strategy", "none")) != "none":
        identity["teacher_head"] = dict(teacher_head)
    return identity


def recipe_hash(
    distill: Mapping[str, Any], student: Mapping[str, Any], teacher_head: Mapping[str, Any] | None = None
) -> str:
    return hash_object(recipe_identity(distill, student, teacher_head))


@dataclass(frozen=True)
class StudentQuery:
    """What ``encoder=distilled`` knows: teacher, configured corpus and recipe (plus optional filters)."""

    teacher_identity: dict[str, Any]
    corpus_reference: dict[str, Any]
    recipe_hash: str
    effective: dict[str, Any] | None = None  # e.g. {"precision": "bf16-mixed", "world_size": 8}

    def describe(self) -> str:
        where = self.corpus_reference.get("dir") or self.corpus_reference.get("files") or self.corpus_reference
        return f"teacher {self.teacher_identity}, corpus {where}, recipe {self.recipe_hash[:12]}"


def iter_students(cache_dir: str | Path) -> list[StudentArtifact]:
    """Every exported student under the cache (folders with a student manifest), oldest first."""
    root = students_root(cache_dir)
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        manifest = read_manifest(folder)
        if manifest and manifest.get("kind") == "student":
            found.append(StudentArtifact(folder, manifest))
    return sorted(found, key=lambda s: str(s.manifest.get("created", "")))


def _matches(student: StudentArtifact, query: StudentQuery) -> bool:
    lookup = student.manifest.get("lookup") or {}
    if lookup.get("teacher_identity") != query.teacher_identity:
        return False
    if lookup.get("recipe_hash") != query.recipe_hash:
        return False
    if lookup.get("corpus_reference") != query.corpus_reference:
        return False
    effective = student.effective
    return all(effective.get(k) == v for k, v in (query.effective or {}).items())


def find_students(cache_dir: str | Path, query: StudentQuery) -> list[StudentArtifact]:
    return [s for s in iter_students(cache_dir) if _matches(s, query)]


def resolve_student(cache_dir: str | Path, query: StudentQuery) -> StudentArtifact:
    """The one student that matches ``query``; none or several is a :class:`StudentLookupError`."""
    matches = find_students(cache_dir, query)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        same_teacher = [
            s for s in iter_students(cache_dir)
            if (s.manifest.get("lookup") or {}).get("teacher_identity") == query.teacher_identity
        ]
        listing = "".join(f"\n  - {s.summary()}" for s in same_teacher) or " (none)"
        raise StudentLookupError(
            f"No distilled student in {students_root(cache_dir)} for {query.describe()}. Distil it first with "
            f"the same teacher/corpus/distill settings: `python run.py task=distill ...`, or point at a folder "
            f"with encoder=path encoder.name_or_path=<student>. Students of this teacher:{listing}"
        )
    listing = "".join(f"\n  - {s.summary()}" for s in matches)
    raise StudentLookupError(
        f"{len(matches)} students match {query.describe()}; they differ in how they were run. Pick one with "
        f"encoder.match.precision=<...> / encoder.match.world_size=<...>, or encoder=path "
        f"encoder.name_or_path=<folder>:{listing}"
    )
