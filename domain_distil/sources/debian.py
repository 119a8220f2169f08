"""Debian's own archive -> a TD-style benchmark: the top-10-debtags task over translated package
descriptions, a same-source in-domain corpus, general text, and (optionally) manual pages.

What comes from where: docs/debian.md. A package in any language's task split is in no language's
corpus, so no translation of a test description reaches a student. The indices and .debs are
downloaded by a private apt (``debian_apt.PrivateApt``) unless given by path (the tests do that).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from domain_distil.sources import debian_text
from domain_distil.sources.debian_apt import PrivateApt, unpack_deb
from domain_distil.sources.debian_index import PackageEntry, read_packages, read_translations
from domain_distil.sources.sampling import uniform_key
from domain_distil.sources.td_task import SPLIT_ORDER, Candidate, TagTaskSpec, sample_splits, tag_counts
from domain_distil.sources.writers import PreparedDir

log = logging.getLogger(__name__)

GENERAL_DIR, MANPAGES_DIR = "general", "manpages"


class DebianBuilder:
    """``task=prepare corpus=debian``. Parameters mirror ``conf/corpus/debian.yaml``.

    :param translations: language -> Debian translation codes, first match wins (``por: [pt_BR, pt]``).
    :param apt: ``PrivateApt`` settings (root, mirror, suite, components, keyring).
    :param indices: ``{packages: [paths], translations: {code: path}}`` to skip ``apt-get update``.
    :param debs: package -> .deb path, to skip ``apt-get download`` for it.
    :param task: name, tags (null = the ``top_k`` most common, see ``choose_tags``), top_k,
        exclude_facets, sizes, min_per_tag, scale (per-language factor).
    :param general: ``packages`` (language -> packages of prose) and ``exclude`` (fortune file
        names left out because they are about computers, i.e. in-domain).
    :param manpages: language -> ``{package, dir}`` (``dir`` under usr/share/man; null = English), or null.
    """

    kind = "debian"

    def __init__(self, translations: Mapping[str, Sequence[str]], apt: Mapping[str, Any],
                 task: Mapping[str, Any], general: Mapping[str, Any] | None = None,
                 manpages: Mapping[str, Mapping[str, Any]] | None = None,
                 indices: Mapping[str, Any] | None = None, debs: Mapping[str, str] | None = None) -> None:
        self.translations = {lang: list(codes) for lang, codes in translations.items()}
        self.apt_settings = dict(apt)
        self.task = dict(task)
        self.general = dict(general or {})
        self.manpages = {lang: dict(v) for lang, v in (manpages or {}).items()}
        self.indices = dict(indices) if indices else None
        self.debs = {name: Path(path) for name, path in (debs or {}).items()}
        self._apt: PrivateApt | None = None

    def apt(self, languages: Sequence[str]) -> PrivateApt:
        if self._apt is None:
            codes = [code for lang in languages for code in self.translations[lang]]
            self._apt = PrivateApt(translation_codes=codes, **self.apt_settings)
        return self._apt

    def index_files(self, languages: Sequence[str]) -> tuple[list[Path], dict[str, Path]]:
        if self.indices is not None:
            return ([Path(p) for p in self.indices["packages"]],
                    {code: Path(p) for code, p in self.indices["translations"].items()})
        apt = self.apt(languages)
        apt.update()
        return apt.index_files()

    def unpacked(self, out: PreparedDir, package: str, languages: Sequence[str]) -> Path:
        deb = self.debs.get(package) or self.apt(languages).download(package)
        return unpack_deb(deb, out.state_dir / "unpacked" / package)

    def descriptions(self, languages: Sequence[str], packages: Mapping[str, PackageEntry],
                     translation_files: Mapping[str, Path]) -> dict[str, dict[str, str]]:
        """language -> package -> description text, from the first code of the language that has it."""
        by_code = {code: read_translations(translation_files[code], code)
                   for lang in languages for code in self.translations[lang] if code in translation_files}
        out: dict[str, dict[str, str]] = {}
        for lang in languages:
            codes = [c for c in self.translations[lang] if c in by_code]
            if not codes:
                raise FileNotFoundError(
                    f"no Translation file for {lang} (codes {self.translations[lang]}); "
                    f"apt fetched {sorted(translation_files)}")
            out[lang] = {}
            for name, entry in packages.items():
                text = next((by_code[c][entry.description_md5] for c in codes if entry.description_md5 in by_code[c]), None)
                if text:
                    out[lang][name] = text
        return out

    def choose_tags(self, packages: Mapping[str, PackageEntry], described: Mapping[str, Mapping[str, str]]) -> tuple[str, ...]:
        """The task's tags: the configured list, or the ``top_k`` tags carried by most of the packages
        described in every selected language (so every language can meet the per-tag minimum),
        leaving out facets such as ``special::`` (bookkeeping, not content); ties by name."""
        if self.task.get("tags"):
            return tuple(self.task["tags"])
        excluded = tuple(f"{facet}::" for facet in self.task.get("exclude_facets") or ())
        common = set.intersection(*(set(d) for d in described.values()))
        counts = Counter(tag for name in common for tag in packages[name].tags if not tag.startswith(excluded))
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: int(self.task.get("top_k", 10))]
        return tuple(tag for tag, _ in top)

    def spec_for(self, lang: str, tags: tuple[str, ...]) -> TagTaskSpec:
        spec = TagTaskSpec(tags=tags, sizes=dict(self.task["sizes"]), min_per_tag=dict(self.task["min_per_tag"]))
        factor = float((self.task.get("scale") or {}).get(lang, 1.0))
        return spec if factor == 1.0 else spec.scaled(factor)

    def build(self, out: PreparedDir, languages: Sequence[str] | None, seed: int) -> dict[str, Any]:
        langs = list(languages) if languages else list(self.translations)
        unknown = [lang for lang in langs if lang not in self.translations]
        if unknown:
            raise ValueError(f"corpus.languages {unknown} have no corpus.source.translations entry")
        package_files, translation_files = self.index_files(langs)
        packages = read_packages(package_files)
        described = self.descriptions(langs, packages, translation_files)
        tags = self.choose_tags(packages, described)
        log.info("%d packages; task tags: %s", len(packages), ", ".join(tags))
        task_name = str(self.task.get("name", "debian_tags"))
        splits = {lang: self._sample(lang, tags, packages, described[lang], seed) for lang in langs}
        in_any_split = {name for per_lang in splits.values() for name in per_lang}
        records: dict[str, Any] = {}
        for lang in langs:
            spec = self.spec_for(lang, tags)
            rows = [{"id": f"{lang}:{name}", "text": described[lang][name], "labels": spec.labels(spec.mask(packages[name].tags)),
                     "lang": lang, "split": split, "source": "natural"} for name, split in splits[lang].items()]
            out.write_task_part(task_name, lang, rows)
            rest = sorted((n for n in described[lang] if n not in in_any_split), key=lambda n: uniform_key(seed, n))
            with out.corpus_writer(lang) as writer:
                for name in rest:
                    writer.write(described[lang][name])
            records[lang] = {
                "descriptions": len(described[lang]),
                "corpus": writer.record(),
                "task": {split: {"packages": sum(1 for r in rows if r["split"] == split),
                                 "tags": dict(Counter(t for r in rows if r["split"] == split for t in r["labels"]))}
                         for split in SPLIT_ORDER},
            }
        self._write_general(out, langs, seed, records)
        self._write_manpages(out, langs, seed, records)
        task_path = out.assemble_task(task_name, langs)
        return {
            "languages": records,
            "tasks": {task_name: {"file": out.relative(task_path), "labels": list(tags), "multi_label": True,
                                  "languages": {lang: records[lang]["task"] for lang in langs}}},
            "inputs": {"packages": [str(p) for p in package_files],
                       "translations": {code: str(p) for code, p in translation_files.items()}},
        }

    def _sample(self, lang: str, tags: tuple[str, ...], packages: Mapping[str, PackageEntry],
                described: Mapping[str, str], seed: int) -> dict[str, str]:
        """package -> split for one language (the TD rule on the packages described in it)."""
        spec = self.spec_for(lang, tags)
        candidates = []
        for index, name in enumerate(sorted(described)):
            mask = spec.mask(packages[name].tags)
            if mask:
                candidates.append((name, Candidate(uniform_key(seed, name), index, mask, len(described[name]))))
        names = {c.post_id: name for name, c in candidates}
        ordered = sorted((c for _, c in candidates), key=lambda c: (c.key, c.post_id))
        per_tag = [[c for c in ordered if c.mask >> i & 1] for i in range(len(tags))]
        totals = [len(lst) for lst in per_tag]
        chosen = sample_splits(ordered, per_tag, totals, spec, where=f"{lang} ({len(ordered)} tagged packages described)")
        log.info("%s: %s", lang, {split: tag_counts(cs, spec) for split, cs in chosen.items()})
        return {names[c.post_id]: split for split, cs in chosen.items() for c in cs}

    def _write_general(self, out: PreparedDir, langs: Sequence[str], seed: int, records: dict[str, Any]) -> None:
        by_lang = self.general.get("packages") or {}
        excluded = set(self.general.get("exclude") or ())
        for lang in langs:
            docs: list[str] = []
            sources: list[str] = []
            for package in by_lang.get(lang) or []:
                root = self.unpacked(out, package, langs)
                for path in debian_text.fortune_files(root):
                    if path.name not in excluded:
                        docs.extend(debian_text.fortunes(path))
                        sources.append(f"{package}:{path.name}")
            records[lang]["general"] = self._write_docs(out, GENERAL_DIR, lang, docs, seed) | {"sources": sources}
            if not docs:
                log.warning("%s: no general text (no package of prose configured or found)", lang)

    def _write_manpages(self, out: PreparedDir, langs: Sequence[str], seed: int, records: dict[str, Any]) -> None:
        if not self.manpages:
            return
        use_groff = debian_text.has_groff()
        for lang in langs:
            setting = self.manpages.get(lang)
            docs: list[str] = []
            if setting:
                root = self.unpacked(out, str(setting["package"]), langs)
                pages = debian_text.man_pages(root, setting.get("dir"))
                docs = [d for d in (debian_text.render_man(debian_text.read_roff(p), use_groff) for p in pages) if d]
            records[lang]["manpages"] = self._write_docs(out, MANPAGES_DIR, lang, docs, seed) | {
                "renderer": "groff" if use_groff else "roff stripper"}

    @staticmethod
    def _write_docs(out: PreparedDir, folder: str, lang: str, docs: list[str], seed: int) -> dict[str, Any]:
        """One document per line in seeded random order, so a token budget takes a uniform sample."""
        path = out.root / folder / f"{lang}.txt"
        order = sorted(range(len(docs)), key=lambda i: uniform_key(seed, f"{lang}\x1f{i}"))
        with out.document_writer(path) as writer:
            for i in order:
                writer.write(docs[i])
        return writer.record()
