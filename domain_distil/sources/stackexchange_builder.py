"""Stack Exchange dumps -> per-language distillation corpus + the TD top-10-tag task.

Two streaming passes per site, both in constant memory (docs/data-sources.md, "How a budget is
met"): a scan histograms post bytes by key and fills the bounded ``CandidatePool``; after the task
splits are sampled their posts (and answers to them, which would leak the test posts) are taken out
of the histogram and the write pass takes the rest by key to the budget, disjoint from the task.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from domain_distil.common.hashing import hash_file
from domain_distil.common.progress import byte_progress
from domain_distil.sources.html_text import CODE_POLICIES, CodePolicy
from domain_distil.sources.sampling import BudgetFilter, KeyHistogram, budget_bytes, uniform_key
from domain_distil.sources.stackexchange import ANSWER, QUESTION, Post, PostsFile, language_of, site_of
from domain_distil.sources.td_task import SPLIT_ORDER, Candidate, CandidatePool, TagTaskSpec, tag_counts
from domain_distil.sources.writers import PreparedDir, document_line, input_fingerprint, line_bytes

log = logging.getLogger(__name__)


class StackExchangeBuilder:
    """Builds ``corpus/<lang>.txt`` and ``tasks/<task.name>.jsonl`` from Stack Exchange dumps.

    :param dumps: language code (or site name, e.g. ``es.stackoverflow.com``) -> path of the
        site's ``.7z`` archive, ``*-Posts.7z`` or extracted ``Posts.xml``.
    :param budgets: language -> GB of corpus text; a missing language or ``None`` = all posts.
    :param code: code-block policy (keep | drop | placeholder); ``inline_code`` for ``<code>``.
    :param task: the TD task (``name``, ``tags``, ``sizes``, ``min_per_tag``, ``scale`` per
        language), or ``None`` for a corpus only.
    :param margin: extra fraction the threshold aims over the budget (see ``KeyHistogram``).
    """

    kind = "stackexchange"

    def __init__(
        self,
        dumps: Mapping[str, str],
        budgets: Mapping[str, float | None] | None = None,
        code: CodePolicy = "keep",
        inline_code: CodePolicy = "keep",
        code_placeholder: str = "[CODE]",
        task: Mapping[str, Any] | None = None,
        margin: float = 0.02,
    ) -> None:
        if code not in CODE_POLICIES or inline_code not in CODE_POLICIES:
            raise ValueError(f"code and inline_code must be one of {CODE_POLICIES}; "
                             f"got {code!r}, {inline_code!r}")
        self.dumps = {language_of(k): str(v) for k, v in dumps.items()}
        self.budgets = dict(budgets or {})
        self.code, self.inline_code, self.placeholder = code, inline_code, code_placeholder
        self.task = dict(task) if task else None
        self.margin = margin
        if self.task is not None:
            self.task_name = str(self.task.get("name", "td_tags"))
            default = TagTaskSpec()
            self.base_spec = TagTaskSpec(
                tags=tuple(self.task.get("tags") or default.tags),
                sizes=dict(self.task.get("sizes") or default.sizes),
                min_per_tag=dict(self.task.get("min_per_tag") or default.min_per_tag),
            )
            self.scale = {str(k): float(v) for k, v in (self.task.get("scale") or {}).items()}

    def spec_for(self, lang: str) -> TagTaskSpec | None:
        if self.task is None:
            return None
        factor = self.scale.get(lang, 1.0)
        return self.base_spec if factor == 1.0 else self.base_spec.scaled(factor)

    def languages(self, wanted: Sequence[str] | None) -> list[str]:
        langs = list(wanted) if wanted else list(self.dumps)
        missing = [lang for lang in langs if lang not in self.dumps]
        if missing:
            raise ValueError(f"no Stack Exchange dump configured for {missing}; "
                             "set corpus.source.dumps.<lang>")
        for lang in langs:  # fail before any long work, not after English took an hour
            if str(self.dumps[lang]) == "???" or not Path(self.dumps[lang]).exists():
                raise FileNotFoundError(f"Stack Exchange dump for {lang} not found: {self.dumps[lang]!r}")
        return langs

    def text(self, post: Post) -> str:
        return document_line(post.text(self.code, self.inline_code, self.placeholder))

    def build(self, out: PreparedDir, languages: Sequence[str] | None, seed: int) -> dict[str, Any]:
        langs = self.languages(languages)
        records: dict[str, Any] = {}
        for lang in langs:
            path = Path(self.dumps[lang])
            fingerprint = input_fingerprint(
                path, seed=seed, budget=self.budgets.get(lang), code=[self.code, self.inline_code, self.placeholder],
                task=self.task, spec=repr(self.spec_for(lang)), margin=self.margin,
            )
            records[lang] = out.resumable(f"stackexchange.{lang}", fingerprint, self._build_language,
                                          out, lang, path, seed)
        tasks: dict[str, Any] = {}
        if self.task is not None:
            task_path = out.assemble_task(self.task_name, langs)
            tasks[self.task_name] = {"file": out.relative(task_path), "labels": list(self.base_spec.tags),
                                     "multi_label": True,
                                     "languages": {lang: records[lang]["task"] for lang in langs}}
        return {
            "languages": {lang: {k: v for k, v in r.items() if k != "task"} for lang, r in records.items()},
            "tasks": tasks,
        }

    def _build_language(self, out: PreparedDir, lang: str, path: Path, seed: int) -> dict[str, Any]:
        posts = PostsFile(path)
        spec = self.spec_for(lang)
        budget = budget_bytes(self.budgets.get(lang))
        pool = CandidatePool(spec) if spec is not None else None
        hist = KeyHistogram()
        if pool is not None or budget is not None:
            with byte_progress(f"{lang}: scan {path.name}", posts.total_bytes) as update:
                for post in posts.posts(update):
                    key = uniform_key(seed, post.id)
                    nbytes = 0
                    if budget is not None:
                        line = self.text(post)
                        nbytes = line_bytes(line) if line else 0
                        hist.add(key, nbytes)
                    if pool is None:
                        continue
                    if post.post_type == QUESTION:
                        pool.offer(Candidate(key, post.id, spec.mask(post.tags), nbytes))
                    elif post.post_type == ANSWER and post.parent_id is not None:
                        pool.add_answer(post.parent_id, key, nbytes)
        splits = pool.sample(where=f"{lang} ({path.name})") if pool is not None else {}
        task_split = {c.post_id: split for split, cs in splits.items() for c in cs}
        for cs in splits.values():  # the corpus budget counts only what the corpus may use
            for c in cs:
                for key, nbytes in [(c.key, c.nbytes), *pool.answers.get(c.post_id, [])]:
                    hist.add(key, -nbytes)
        threshold = hist.threshold(budget, self.margin)
        gate = BudgetFilter(threshold, budget)
        rows: dict[int, dict[str, Any]] = {}
        left_out_answers = 0
        with out.corpus_writer(lang) as writer, byte_progress(f"{lang}: write", posts.total_bytes) as update:
            for post in posts.posts(update):
                split = task_split.get(post.id)
                if split is not None:
                    rows[post.id] = {"id": f"{lang}:{post.id}", "text": self.text(post),
                                     "labels": spec.labels(spec.mask(post.tags)), "lang": lang,
                                     "split": split, "source": "natural"}
                    continue
                if post.post_type == ANSWER and post.parent_id in task_split:
                    left_out_answers += 1
                    continue
                key = uniform_key(seed, post.id)
                if key >= threshold or gate.full:
                    continue
                line = self.text(post)
                if line and gate.accept(key, line_bytes(line)):
                    writer.write(line)
            if len(rows) != len(task_split):
                raise RuntimeError(
                    f"{path}: {len(task_split) - len(rows)} task posts seen in the first pass "
                    "were missing in the second; did the file change while it was read?"
                )
            fake = posts.fake_skipped
        if budget is not None and writer.bytes < 0.99 * budget:
            log.warning("%s: only %d bytes of text available for a budget of %d bytes; took all of it",
                        lang, writer.bytes, budget)
        record: dict[str, Any] = {
            "site": site_of(path),
            "input": {"path": str(path), "bytes": path.stat().st_size, "sha256": hash_file(path)},
            "corpus": writer.record() | {"budget_bytes": budget, "key_threshold": threshold,
                                         "answers_to_task_questions_left_out": left_out_answers},
            "fake_posts_dropped": fake,
            "outputs": [out.relative(out.corpus_path(lang))],
        }
        if spec is not None:
            order = {s: i for i, s in enumerate(SPLIT_ORDER)}
            ordered = sorted(rows.values(), key=lambda r: (order[r["split"]], uniform_key(seed, r["id"])))
            out.write_task_part(self.task_name, lang, ordered)
            record["outputs"].append(out.relative(out.task_part_path(self.task_name, lang)))
            record["task"] = {s: {"posts": len(cs), "tags": tag_counts(cs, spec)} for s, cs in splits.items()}
            record["task"] |= {"candidates": pool.candidates,
                               "candidates_per_tag": dict(zip(spec.tags, pool.tag_totals))}
        return record
