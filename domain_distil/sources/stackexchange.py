"""Stack Exchange data dumps: stream ``Posts.xml`` rows from a site's 7z archive or an extracted
file, in constant memory, as typed posts (the dump's schema and its quirks: docs/data-sources.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from domain_distil.sources.html_text import CodePolicy, html_to_text
from domain_distil.sources.streams import CountingReader, MalformedInputError, find_7z_member, open_7z_member

QUESTION, ANSWER = 1, 2
# meta.stackexchange.com/questions/412018: fabricated question and answer added to every site.
FAKE_POST_IDS = frozenset({1000000001, 1000000010})

# The paper's five StackOverflow sites and its language codes (ISO 639-3 as the paper writes them).
SITE_LANGUAGES: dict[str, str] = {"stackoverflow.com": "eng", "es.stackoverflow.com": "esp",
                                   "ja.stackoverflow.com": "jap", "pt.stackoverflow.com": "por",
                                   "ru.stackoverflow.com": "rus"}

_ANGLE_TAGS = re.compile(r"<([^<>]+)>")


def site_of(path: str | Path) -> str:
    """The site a dump file belongs to: ``.../es.stackoverflow.com.7z`` -> ``es.stackoverflow.com``,
    ``stackoverflow.com-Posts.7z`` -> ``stackoverflow.com``."""
    name = Path(path).name
    for suffix in (".7z", ".xml"):
        name = name.removesuffix(suffix)
    return re.sub(r"-Posts$", "", name, flags=re.IGNORECASE)


def language_of(site_or_lang: str) -> str:
    """A language code for a site name; a key that is already a code is returned unchanged."""
    return SITE_LANGUAGES.get(site_or_lang, site_or_lang)


def parse_tags(value: str | None) -> tuple[str, ...]:
    """Both tag formats: ``<c#><winforms>`` (older dumps) and ``|c#|winforms|`` (newer)."""
    if value is None:
        return ()
    text = value.strip()
    if not text:
        return ()
    if text.startswith("<"):
        tags = _ANGLE_TAGS.findall(text)
        if "".join(f"<{t}>" for t in tags) != text:
            raise ValueError(f"tags {value!r} are not of the form <a><b>")
        return tuple(tags)
    if text.startswith("|") and text.endswith("|"):
        return tuple(t for t in text[1:-1].split("|") if t)
    raise ValueError(f"tags {value!r} are neither <a><b> nor |a|b|")


@dataclass(frozen=True, slots=True)
class Post:
    id: int
    post_type: int
    parent_id: int | None
    title: str
    body: str  # HTML
    tags: tuple[str, ...]

    @property
    def is_question(self) -> bool:
        return self.post_type == QUESTION

    def text(self, code: CodePolicy = "keep", inline_code: CodePolicy = "keep",
             placeholder: str = "[CODE]") -> str:
        """Question: title then body; answer: body. One line of plain text."""
        body = html_to_text(self.body, code=code, inline_code=inline_code, placeholder=placeholder)
        return f"{self.title} {body}".strip() if self.title else body


class PostsFile:
    """A site's posts: ``*.7z`` (the member named Posts.xml is streamed) or ``Posts.xml``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"Stack Exchange dump not found: {self.path}")
        if self.path.suffix.lower() == ".7z":
            self.member, self.total_bytes = find_7z_member(self.path, "Posts.xml")
        else:
            self.member, self.total_bytes = None, self.path.stat().st_size
        self.where = f"{self.path}!{self.member}" if self.member else str(self.path)
        self.fake_skipped = 0  # fabricated posts dropped by the last posts() pass

    def _open(self) -> AbstractContextManager:
        if self.member is not None:
            return open_7z_member(self.path, self.member)
        return open(self.path, "rb")

    def rows(self, progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
        """(line, attributes) per ``<row>``, freeing each element once read (constant memory).

        A truncated or malformed file raises ``MalformedInputError`` with the line, column and
        byte offset where parsing stopped and the last row read before it.
        """
        count, last_id = 0, None
        try:
            with self._open() as raw:  # entering it raises neither error caught below
                reader = CountingReader(raw)
                # huge_tree: a single Body attribute can pass libxml2's 10 MB text-node limit.
                for _, elem in etree.iterparse(reader, events=("end",), tag="row", huge_tree=True):
                    attrib = dict(elem.attrib)
                    line = elem.sourceline or 0
                    # Free the row and every finished sibling, or the tree grows with the file.
                    elem.clear(keep_tail=True)
                    while elem.getprevious() is not None:
                        del elem.getparent()[0]
                    count += 1
                    last_id = attrib.get("Id", last_id)
                    if progress is not None and count % 2048 == 0:
                        progress(reader.position)
                    yield line, attrib
        except etree.XMLSyntaxError as error:
            line, column = error.position if error.position else (0, 0)
            raise MalformedInputError(
                f"{self.where}: malformed or truncated XML at line {line}, column {column} "
                f"(byte offset about {reader.position} of {self.total_bytes}) after {count} rows "
                f"(last row Id={last_id}): {error.msg}"
            ) from error
        except MalformedInputError as error:  # raised leaving the 7z stream (CRC, corrupt data)
            raise MalformedInputError(
                f"{error}; uncompressed byte offset about {reader.position} of {self.total_bytes}, "
                f"after {count} rows (last row Id={last_id})"
            ) from error
        if progress is not None:
            progress(reader.position)

    def posts(self, progress: Callable[[int], None] | None = None) -> Iterator[Post]:
        """Questions and answers; other post types (tag wikis, ...) and the fake posts are skipped."""
        self.fake_skipped = 0
        for line, a in self.rows(progress):
            try:
                parent = a.get("ParentId")
                post = Post(int(a["Id"]), int(a["PostTypeId"]), int(parent) if parent else None,
                            a.get("Title", ""), a.get("Body", ""), parse_tags(a.get("Tags")))
            except KeyError as error:
                raise MalformedInputError(
                    f"{self.where}: line {line}: row lacks the required attribute {error.args[0]} "
                    f"(is this a Posts.xml? attributes: {sorted(a)[:8]})"
                ) from None
            except ValueError as error:
                where = f"{self.where}: line {line}, row Id={a.get('Id')}"
                raise MalformedInputError(f"{where}: {error}") from None
            if post.post_type not in (QUESTION, ANSWER):
                continue
            if post.id in FAKE_POST_IDS:
                self.fake_skipped += 1
                continue
            yield post
