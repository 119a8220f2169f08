"""Everything in a cache (and bundles under given folders), one row per artifact with its key facts.

Reads only the small records artifacts carry (``manifest.json``, ``meta.json``, ``mlm_head.json``), never weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain_distil.artifacts.manifest import read_manifest
from domain_distil.artifacts.students import StudentArtifact, iter_students
from domain_distil.common.io import HEAD_RECORD, MANIFEST


@dataclass(frozen=True)
class ArtifactRow:
    kind: str  # student | corpus | features | teacher | mlm_head | bundle
    path: Path
    facts: dict[str, Any]

    def describe(self) -> str:
        return "  ".join(f"{k}={v}" for k, v in self.facts.items() if v not in (None, "", [], {}))


def _size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6, 1)


def _student_row(student: StudentArtifact) -> ArtifactRow:
    m, eff, ref = student.manifest, student.effective, student.corpus_reference
    # key: what encoder=distilled encoder.key=<key> takes; id: its default row name in a report.
    return ArtifactRow("student", student.path, {
        "key": student.key, "id": student.default_id,
        "teacher": m.get("teacher"), "corpus": ref.get("dir") or ref.get("name"),
        "corpus_hash": str(m.get("corpus_hash", ""))[:12], "layers": m.get("student_layers"),
        "steps": m.get("steps"), "precision": eff.get("precision"), "world_size": eff.get("world_size"),
        "global_batch": eff.get("global_batch"), "created": m.get("created"),
    })


def _meta_rows(cache_dir: Path, kind: str, facts: Callable[[Path, dict[str, Any]], dict[str, Any]]) -> list[ArtifactRow]:
    """One row per folder of ``<cache_dir>/<kind>`` with a readable ``meta.json``."""
    folders = sorted((cache_dir / kind).glob("[!.]*"))
    return [ArtifactRow(kind, f, facts(f, meta)) for f in folders if (meta := read_manifest(f, "meta.json")) is not None]


def _corpus_facts(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    languages = meta.get("languages") or {}
    return {"languages": ",".join(sorted(languages)),
            "tokens": sum(int(s.get("tokens", 0)) for s in languages.values()),
            "sequences": sum(int(s.get("sequences", 0)) for s in languages.values())}


def _feature_facts(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {"encoder_hash": str(meta.get("encoder_hash", ""))[:12], "examples": meta.get("examples"),
            "max_length": meta.get("max_length"), "dtype": meta.get("dtype"), "size_mb": _size_mb(folder)}


def _manifested(root: Path, pattern: str, kind: str) -> list[ArtifactRow]:
    rows = []
    for path in sorted(root.glob(pattern)):
        folder = path.parent
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue  # temp folders of a build in progress
        manifest = read_manifest(folder, path.name)  # manifest.json, or a fitted head's mlm_head.json
        if manifest is None or manifest.get("kind") != kind:
            continue
        facts = {k: manifest.get(k) for k in ("name", "base", "encoder", "created") if manifest.get(k)}
        if kind == "serving_bundle":
            facts["heads"] = len(manifest.get("heads") or [])
        rows.append(ArtifactRow({"serving_bundle": "bundle"}.get(kind, kind), folder, facts))
    return rows


def list_artifacts(cache_dir: str | Path, bundle_roots: Iterable[str | Path] = ()) -> list[ArtifactRow]:
    """Students, corpora, feature caches, converted teachers and fitted MLM heads in ``cache_dir``,
    plus serving bundles found (recursively) under ``bundle_roots``."""
    cache_dir = Path(cache_dir)
    rows = [*map(_student_row, iter_students(cache_dir)), *_meta_rows(cache_dir, "corpus", _corpus_facts),
            *_meta_rows(cache_dir, "features", _feature_facts)]
    rows += _manifested(cache_dir / "teachers", f"*/{MANIFEST}", "teacher")
    rows += _manifested(cache_dir / "mlm_heads", f"*/{HEAD_RECORD}", "mlm_head")
    for root in bundle_roots:
        if Path(root).is_dir():
            rows += _manifested(Path(root), f"**/{MANIFEST}", "serving_bundle")
    return rows
