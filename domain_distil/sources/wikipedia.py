"""Wikipedia ``pages-articles`` dumps -> plain text -> 1 MB chunks -> random chunks to a budget.

The paper's Wiki3.0 control (§5); pipeline and one-pass bottom-k sampling: docs/data-sources.md,
"Wikipedia". Memory holds one chunk and disk about the budget.
"""

from __future__ import annotations

import bz2
import heapq
import logging
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mwparserfromhell
import mwxml
from mwxml.errors import MalformedXML

from domain_distil.common.hashing import hash_file
from domain_distil.common.io import atomic_open
from domain_distil.common.progress import byte_progress
from domain_distil.sources.sampling import budget_bytes, language_budgets, uniform_key
from domain_distil.sources.streams import MalformedInputError
from domain_distil.sources.writers import PreparedDir, document_line, input_fingerprint, line_bytes

log = logging.getLogger(__name__)

_TABLE_LINE = re.compile(r"^\s*(\{\||\|\}|\|-|\||!).*$", re.MULTILINE)


def wikitext_to_text(wikitext: str) -> str:
    """Readable text of an article, paragraphs separated by blank lines."""
    code = mwparserfromhell.parse(wikitext)
    for link in code.filter_wikilinks(recursive=False):
        if ":" in str(link.title):  # File:, Category:, Image:, interlanguage links
            try:
                code.remove(link)
            except ValueError:
                pass
    text = code.strip_code(normalize=True, collapse=True)
    text = _TABLE_LINE.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_document(text: str, max_bytes: int) -> list[str]:
    """One line per piece, each at most ``max_bytes`` in the file (newline included); cut at
    paragraph boundaries, and inside a paragraph at word (or, failing that, character) ones."""
    pieces: list[str] = []
    current = ""
    for para in (document_line(p) for p in text.split("\n\n")):
        if not para:
            continue
        candidate = f"{current} {para}" if current else para
        if line_bytes(candidate) <= max_bytes:
            current = candidate
            continue
        if current:
            pieces.append(current)
            current = ""
        while line_bytes(para) > max_bytes:
            cut = para.encode("utf-8")[: max_bytes - 1].decode("utf-8", errors="ignore")
            space = cut.rfind(" ")
            cut = cut[:space] if space > 0 else cut
            pieces.append(cut)
            para = para[len(cut) :].lstrip()
        current = para
    if current:
        pieces.append(current)
    return pieces


def iter_articles(path: str | Path, namespaces: Sequence[int] = (0,), min_chars: int = 0,
                  progress=None) -> Iterator[tuple[int, str, str]]:
    """(page id, title, text) of every non-redirect page in ``namespaces``.

    A truncated or malformed dump raises ``MalformedInputError`` naming the compressed byte
    offset reached and the last page read.
    """
    path = Path(path)
    last: tuple[int, str] | None = None
    pages = 0
    # raw.tell(): the compressed bytes read so far
    with open(path, "rb") as raw, bz2.open(raw) if path.suffix == ".bz2" else nullcontext(raw) as stream:
        try:
            for page in mwxml.Dump.from_file(stream):
                pages += 1
                if progress is not None and pages % 256 == 0:
                    progress(raw.tell())
                if page.namespace not in namespaces or page.redirect:
                    for _ in page:  # drain the revisions so the parser moves on
                        pass
                    continue
                text = ""
                for revision in page:  # pages-articles: one (the current) revision per page
                    text = revision.text or ""
                last = (page.id, page.title)
                plain = wikitext_to_text(text)
                if len(plain) >= min_chars:
                    yield page.id, page.title, plain
        except (EOFError, OSError, ValueError, SyntaxError, MalformedXML) as error:  # bz2 EOF, XML ParseError
            where = f"after page {last[0]} ({last[1]!r})" if last else "before the first article"
            raise MalformedInputError(
                f"{path}: truncated or malformed dump at compressed byte offset about {raw.tell()} of "
                f"{path.stat().st_size}, {where}, {pages} pages read: {type(error).__name__}: {error}"
            ) from error
        if progress is not None:
            progress(raw.tell())


def iter_chunks(documents: Iterator[str], chunk_bytes: int) -> Iterator[list[str]]:
    """Pack lines, in order, into chunks of at most ``chunk_bytes`` (every line must fit)."""
    chunk: list[str] = []
    size = 0
    for line in documents:
        n = line_bytes(line)
        if chunk and size + n > chunk_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += n
    if chunk:
        yield chunk


class _ChunkReservoir:
    """Keeps the smallest-key chunks whose byte total just reaches the budget, on disk."""

    def __init__(self, spill: Path, target: int | None) -> None:
        self.spill = spill
        self.target = target
        self.heap: list[tuple[float, int, int]] = []  # (-key, -index, bytes): largest key on top
        self.total = 0

    def offer(self, key: float, index: int, lines: list[str]) -> None:
        nbytes = sum(line_bytes(x) for x in lines)
        if self.target is not None and self.total >= self.target and self.heap and -self.heap[0][0] < key:
            return
        (self.spill / f"{index:09d}.txt").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        heapq.heappush(self.heap, (-key, -index, nbytes))
        self.total += nbytes
        # Drop the largest keys while the rest still reaches the budget.
        while self.target is not None and self.heap and self.total - self.heap[0][2] >= self.target:
            _, neg_index, dropped = heapq.heappop(self.heap)
            (self.spill / f"{-neg_index:09d}.txt").unlink()
            self.total -= dropped

    def selected(self) -> list[int]:
        """Chunk indices in dump order; the last-key chunk goes when that lands closer to the budget."""
        items = sorted(self.heap, reverse=True)  # smallest key first
        if self.target is not None and len(items) > 1:
            over = self.total - self.target
            under = self.target - (self.total - items[-1][2])
            if under < over:
                items = items[:-1]
        return sorted(-i for _, i, _ in items)


class WikipediaBuilder:
    """Builds ``corpus/<lang>.txt`` from ``{lang}wiki-*-pages-articles.xml.bz2`` dumps.

    :param dumps: language -> dump path.
    :param budgets: language -> GB (``None`` = every chunk), used unless ``total_gb`` is set.
    :param total_gb: a total split over the languages by ``q ∝ p^alpha`` of ``sizes``
        (default: the dump files' sizes).
    """

    kind = "wikipedia"

    def __init__(
        self,
        dumps: Mapping[str, str],
        budgets: Mapping[str, float | None] | None = None,
        chunk_bytes: int = 1 << 20,
        namespaces: Sequence[int] = (0,),
        min_chars: int = 100,
        total_gb: float | None = None,
        alpha: float = 0.7,
        sizes: Mapping[str, float] | None = None,
    ) -> None:
        if chunk_bytes < 64:
            raise ValueError(f"chunk_bytes must be at least 64, got {chunk_bytes}")
        self.dumps = {k: str(v) for k, v in dumps.items()}
        self.budgets = dict(budgets or {})
        self.chunk_bytes = int(chunk_bytes)
        self.namespaces = tuple(int(n) for n in namespaces)
        self.min_chars = int(min_chars)
        self.total_gb, self.alpha, self.sizes = total_gb, float(alpha), dict(sizes) if sizes else None

    def budgets_for(self, langs: Sequence[str]) -> dict[str, float | None]:
        if self.total_gb is None:
            return {lang: self.budgets.get(lang) for lang in langs}
        sizes = self.sizes or {lang: float(Path(self.dumps[lang]).stat().st_size) for lang in langs}
        missing = [lang for lang in langs if lang not in sizes]
        if missing:
            raise ValueError(f"corpus.source.sizes has no size for {missing}; "
                             "give one per language or set sizes=null")
        return language_budgets(float(self.total_gb), {lang: sizes[lang] for lang in langs}, self.alpha)

    def build(self, out: PreparedDir, languages: Sequence[str] | None, seed: int) -> dict[str, Any]:
        langs = list(languages) if languages else list(self.dumps)
        for lang in langs:
            if lang not in self.dumps or not Path(self.dumps[lang]).exists():
                raise FileNotFoundError(f"Wikipedia dump for {lang} not found: {self.dumps.get(lang)!r}")
        budgets = self.budgets_for(langs)
        records: dict[str, Any] = {}
        for lang in langs:
            path = Path(self.dumps[lang])
            fingerprint = input_fingerprint(
                path, seed=seed, budget=budgets[lang], chunk=self.chunk_bytes, ns=self.namespaces,
                min_chars=self.min_chars,
            )
            records[lang] = out.resumable(f"wikipedia.{lang}", fingerprint, self._build_language,
                                          out, lang, path, seed, budgets[lang])
        return {"languages": records, "tasks": {}}

    def _build_language(self, out: PreparedDir, lang: str, path: Path, seed: int,
                        budget_gb: float | None) -> dict:
        target = budget_bytes(budget_gb)
        spill = out.state_dir / "wikipedia" / lang
        shutil.rmtree(spill, ignore_errors=True)  # a half-done pass is redone from the start
        spill.mkdir(parents=True)
        reservoir = _ChunkReservoir(spill, target)
        articles = 0

        def documents(update) -> Iterator[str]:
            nonlocal articles
            for _, _, text in iter_articles(path, self.namespaces, self.min_chars, update):
                articles += 1
                yield from split_document(text, self.chunk_bytes)

        chunks = 0
        with byte_progress(f"{lang}: {path.name}", path.stat().st_size) as update:
            for index, chunk in enumerate(iter_chunks(documents(update), self.chunk_bytes)):
                chunks += 1
                if target != 0:
                    reservoir.offer(uniform_key(seed, f"{lang}:{index}"), index, chunk)
        selected = reservoir.selected() if target != 0 else []
        documents_written = bytes_written = 0
        with atomic_open(out.corpus_path(lang)) as handle:
            for index in selected:
                data = (spill / f"{index:09d}.txt").read_text(encoding="utf-8")
                handle.write(data)
                documents_written += data.count("\n")
                bytes_written += len(data.encode("utf-8"))
        shutil.rmtree(spill)
        if target is not None and bytes_written < 0.99 * target:
            log.warning("%s: the dump holds only %d bytes of article text for a budget of %d",
                        lang, bytes_written, target)
        return {
            "input": {"path": str(path), "bytes": path.stat().st_size, "sha256": hash_file(path)},
            "corpus": {"file": out.relative(out.corpus_path(lang)), "documents": documents_written,
                       "bytes": bytes_written, "budget_bytes": target, "budget_gb": budget_gb},
            "articles": articles,
            "chunks_total": chunks,
            "chunk_bytes": self.chunk_bytes,
            "chunks_selected": selected,
            "outputs": [out.relative(out.corpus_path(lang))],
        }
