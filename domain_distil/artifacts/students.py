"""Distilled students as artifacts: their identity, their manifest, and finding one by what made it.

Key (hashes what changes the weights) versus lookup record (what a later stage knows without reading
the corpus): docs/architecture.md; a continued student (``student.init=student``): docs/distillation.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain_distil.artifacts.manifest import read_manifest, setting_differences
from domain_distil.common.errors import UserInputError
from domain_distil.common.hashing import hash_object, memoised_model_hash
from domain_distil.modeling.objectives import objective_identity

STUDENTS_DIR = "students"
FORMAT_VERSION = 2

# distill.* keys that change how a run is executed or stored, never its weights; or, like the
# precision and compilation, how the hardware ran it: the key has those in its effective run instead.
NOT_PART_OF_THE_RECIPE = frozenset({"num_workers", "checkpoint_every_n_steps", "keep_checkpoints", "callbacks",
                                    "compile"})
NOT_PART_OF_THE_RECIPE_TRAINER = frozenset({"log_every_n_steps", "precision"})
# corpus.* keys that change how shards are built or where they come from, never which text they hold.
NOT_PART_OF_THE_CORPUS = frozenset({"num_workers", "shard_tokens"})
# A student's default encoder id (results.json, report rows): this prefix, the corpus, a key prefix.
DEFAULT_ID_PREFIX = "distilled"
ID_KEY_CHARS = 6
# conf/corpus/text.yaml's name says nothing about the text, so its folder names the corpus instead.
GENERIC_CORPUS_NAMES = frozenset({"text", "corpus", ""})


class StudentLookupError(UserInputError, LookupError):
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

    @property
    def lookup(self) -> dict[str, Any]:
        return dict(self.manifest.get("lookup") or {})

    @property
    def corpus_reference(self) -> dict[str, Any]:
        return dict(self.lookup.get("corpus_reference") or {})

    @property
    def corpus_label(self) -> str:
        """A short name for the corpus: its configured name, else its folder's (``my_data/chats`` -> chats)."""
        ref = self.corpus_reference
        name = str(ref.get("name") or "")
        if name not in GENERIC_CORPUS_NAMES:
            return _id_safe(name)
        files = ref.get("files") or {}
        first_file = next((paths[0] for paths in files.values() if paths), None) if isinstance(files, Mapping) else None
        folder = ref.get("dir") or (Path(first_file).parent if first_file else None)
        return _id_safe(Path(folder).name) if folder else "corpus"

    @property
    def default_id(self) -> str:
        """The encoder id ``encoder=distilled`` gives this student: two students (an in-domain and a
        general one, or two recipes on one corpus) never share a report row."""
        return f"{DEFAULT_ID_PREFIX}-{self.corpus_label}-{self.key[:ID_KEY_CHARS]}"

    def settings(self) -> dict[str, Any]:
        """What the lookup compares: teacher, corpus reference, recipe and the effective run."""
        lookup = self.lookup
        recipe = lookup.get("recipe")
        if recipe is None:  # manifests before the lookup record held the recipe itself
            made = self.manifest.get("recipe") or {}
            recipe = recipe_identity(made.get("distill") or {}, made.get("student") or {})
        return {"teacher": lookup.get("teacher_identity"), "corpus": self.corpus_reference, "recipe": recipe,
                "effective": self.effective}

    def summary(self) -> str:
        eff = self.effective
        ref = self.corpus_reference
        where = ref.get("dir") or ref.get("files") or ref.get("name")
        return (
            f"key={self.key}  id={self.default_id}  {self.path}  teacher={self.manifest.get('teacher')}  "
            f"corpus={where}  recipe={str(self.lookup.get('recipe_hash', '?'))[:12]}  "
            f"precision={eff.get('precision')}  world_size={eff.get('world_size')}  "
            f"global_batch={eff.get('global_batch')}  created={self.manifest.get('created')}"
        )


def classify_command(student: StudentArtifact, extra: tuple[str, ...] = ()) -> str:
    """The command that classifies with ``student``: its key names it, no distillation setting is repeated."""
    return " ".join(("python run.py task=classify encoder=distilled", f"encoder.key={student.key}", *extra))


def _id_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "corpus"


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
    for key in ("dir", "prepared_dir", "data_dir"):
        if ref.get(key):
            ref[key] = _absolute(ref[key])
    files = ref.get("files")
    if isinstance(files, Mapping):
        ref["files"] = {
            lang: [_absolute(p) for p in (paths if isinstance(paths, list | tuple) else [paths])]
            for lang, paths in sorted(files.items())
        }
    return ref


def recipe_identity(distill: Mapping[str, Any], student: Mapping[str, Any],
                    teacher_head: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The distillation recipe, student layout and teacher-head fit, minus keys that never change weights.

    The loss terms count as ``objective_identity`` says: the running ones, so a new term (off by
    default) leaves every existing key as it was.
    """
    recipe = objective_identity({k: v for k, v in distill.items() if k not in NOT_PART_OF_THE_RECIPE})
    if isinstance(recipe.get("trainer"), Mapping):
        recipe["trainer"] = {k: v for k, v in recipe["trainer"].items() if k not in NOT_PART_OF_THE_RECIPE_TRAINER}
    identity = {"distill": recipe, "student": student_group_identity(student)}
    if teacher_head and str(teacher_head.get("strategy", "none")) != "none":
        identity["teacher_head"] = dict(teacher_head)
    return identity


def recipe_hash(distill: Mapping[str, Any], student: Mapping[str, Any],
                teacher_head: Mapping[str, Any] | None = None) -> str:
    return hash_object(recipe_identity(distill, student, teacher_head))


@dataclass(frozen=True)
class StudentQuery:
    """What ``encoder=distilled`` knows: teacher, configured corpus and recipe (plus optional filters)."""

    teacher_identity: dict[str, Any]
    corpus_reference: dict[str, Any]
    recipe_hash: str
    effective: dict[str, Any] | None = None  # e.g. {"precision": "bf16-mixed", "world_size": 8}
    recipe: dict[str, Any] | None = None  # the recipe itself (recipe_identity), to name what differs

    def describe(self) -> str:
        where = self.corpus_reference.get("dir") or self.corpus_reference.get("files") or self.corpus_reference
        return f"teacher {self.teacher_identity}, corpus {where}, recipe {self.recipe_hash[:12]}"

    def differences(self, student: StudentArtifact) -> list[str]:
        """``field: student's value -> this query's`` for every setting that keeps ``student`` from matching."""
        theirs = student.settings()
        mine = {"teacher": self.teacher_identity, "corpus": self.corpus_reference,
                "recipe": self.recipe if self.recipe is not None else theirs["recipe"]}
        theirs["effective"] = {k: theirs["effective"].get(k) for k in (self.effective or {})}
        mine["effective"] = dict(self.effective or {})
        differences = setting_differences(mine, theirs)
        if self.recipe is None and student.lookup.get("recipe_hash") != self.recipe_hash:
            differences.append(f"recipe hash: {student.lookup.get('recipe_hash')!r} -> {self.recipe_hash!r}")
        return differences


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
    lookup, effective = student.lookup, student.effective
    return (lookup.get("teacher_identity") == query.teacher_identity and lookup.get("recipe_hash") == query.recipe_hash
            and lookup.get("corpus_reference") == query.corpus_reference
            and all(effective.get(k) == v for k, v in (query.effective or {}).items()))


def _with_differences(student: StudentArtifact, query: StudentQuery) -> str:
    differences = query.differences(student) or ["nothing the lookup compares"]
    return f"\n  - {student.summary()}; differs in: " + "; ".join(differences)


def resolve_student(cache_dir: str | Path, query: StudentQuery) -> StudentArtifact:
    """The one student that matches ``query``; none or several is a :class:`StudentLookupError`."""
    students = iter_students(cache_dir)
    matches = [s for s in students if _matches(s, query)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        listing = "".join(_with_differences(s, query) for s in students) or " (none)"
        raise StudentLookupError(
            f"No distilled student in {students_root(cache_dir)} for {query.describe()}. Distil it first with "
            f"the same teacher/corpus/distill settings: `python run.py task=distill ...`, name one with "
            f"encoder.key=<key>, or point at a folder with encoder=path encoder.name_or_path=<student>. "
            f"Students in the cache (the arrow shows the student's value -> this command's):{listing}")
    listing = "".join(f"\n  - {s.summary()}" for s in matches)
    raise StudentLookupError(
        f"{len(matches)} students match {query.describe()}; they differ in how they were run. Pick one with "
        f"encoder.key=<key>, encoder.match.precision=<...> / encoder.match.world_size=<...>, or encoder=path "
        f"encoder.name_or_path=<folder>:{listing}")


def student_by_key(cache_dir: str | Path, key: str, setting: str = "encoder.key") -> StudentArtifact:
    """The student whose key is ``key`` or starts with it, from the manifests alone (``setting`` names
    the config key that asked, for the error); none or several is a :class:`StudentLookupError`."""
    key = key.strip()
    students = iter_students(cache_dir)
    exact = [s for s in students if s.key == key]
    matches = exact or ([s for s in students if s.key.startswith(key)] if key else [])
    if len(matches) == 1:
        return matches[0]
    candidates = matches or students
    listing = "".join(f"\n  - {s.summary()}" for s in candidates) or " (none: run task=distill first)"
    problem = (f"matches {len(matches)} students; give more characters of the key" if matches
               else f"matches no student in {students_root(cache_dir)}")
    raise StudentLookupError(f"{setting}={key!r} {problem}. Students:{listing}")


# student.init: where a student's weights start. "teacher": cut from the teacher's layers (every
# student made before continued distillation, so init/from stay out of such a student's recipe);
# "student": the exported student that student.from names.
STUDENT_INITS = ("teacher", "student")


def student_group_identity(student: Mapping[str, Any]) -> dict[str, Any]:
    """The student group as the recipe hash sees it: ``init``/``from`` only for a continued student."""
    group = dict(student)
    if str(group.get("init", "teacher")) == "teacher" and group.get("from") in (None, ""):
        group.pop("init", None)
        group.pop("from", None)
    return group


def parent_student(cache_dir: str | Path, reference: str) -> StudentArtifact:
    """``student.from``: a folder holding an exported student, else a key (or unique key prefix) in the cache."""
    folder = Path(os.path.expanduser(reference))
    if not folder.is_dir():
        return student_by_key(cache_dir, reference, setting="student.from")
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != "student":
        raise StudentLookupError(
            f"student.from={reference}: {folder} holds no student manifest.json; give an exported student's folder "
            "or key (`python run.py task=list`), or start from any other model with student.name_or_path=<folder>")
    return StudentArtifact(folder, manifest)


def parent_key(parent: StudentArtifact) -> str:
    """The parent's key as its manifest records it (a copied folder may have been renamed)."""
    return str(parent.manifest.get("key") or parent.key)


def with_parent_key(student: Mapping[str, Any], cache_dir: str | Path) -> dict[str, Any]:
    """``student`` with ``from`` replaced by the full key of the student it names (``init=student``):
    a key prefix, the full key and the folder give one recipe hash."""
    if str(student.get("init", "teacher")) != "student" or student.get("from") in (None, ""):
        return dict(student)
    return {**student, "from": parent_key(parent_student(cache_dir, str(student["from"])))}


def parent_identity(parent: StudentArtifact, cache_dir: str | Path | None) -> dict[str, str]:
    """What of the parent changes the continued student's weights: its key and its weights' content hash."""
    return {"key": parent_key(parent), "content": memoised_model_hash(parent.path, cache_dir)}


def lineage(parent: StudentArtifact | None, cache_dir: str | Path | None) -> list[dict[str, Any]]:
    """A continued student's ancestors, nearest first: the parent, then the parent's own lineage
    (empty for a student cut from the teacher)."""
    if parent is None:
        return []
    entry = {**parent_identity(parent, cache_dir), "recipe_hash": parent.lookup.get("recipe_hash"),
             "corpus": parent.corpus_label, "path": str(parent.path)}
    return [entry, *(parent.manifest.get("lineage") or [])]
