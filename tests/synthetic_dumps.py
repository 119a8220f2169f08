"""Small dumps in the real formats (Posts.xml rows, a Wikipedia export), for tests and benchmarks.

Nothing here is used to prepare real data; it exists so that the readers are exercised on files
that look exactly like the published dumps without downloading any.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from domain_distil.sources.td_task import TOP10_TAGS

_WORDS = (
    "list array value function class object string error return loop index type file server "
    "request response query table column thread memory pointer method module package build "
    "deploy test debug version update install config path event handler widget layout"
).split()
_OTHER_TAGS = ("sql", "css", "node.js", "django", "swift", "kotlin", "linux", "git", "regex", "json")


def format_tags(tags: Iterable[str], style: str) -> str:
    """``angle``: ``<a><b>`` (older dumps); ``pipe``: ``|a|b|`` (newer dumps)."""
    tags = list(tags)
    return "".join(f"<{t}>" for t in tags) if style == "angle" else "|" + "|".join(tags) + "|"


def write_posts_xml(handle: IO[str], rows: Iterable[Mapping[str, object]]) -> None:
    """Rows as ``<row Attr="..."/>`` under ``<posts>``, attribute values XML-escaped as in the dump."""
    handle.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
    for row in rows:
        attrs = " ".join(f"{k}={quoteattr(str(v))}" for k, v in row.items() if v is not None)
        handle.write(f"  <row {attrs} />\n")
    handle.write("</posts>\n")


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def synthetic_posts(
    n_questions: int,
    seed: int = 0,
    answers_per_question: int = 1,
    tag_style: str = "angle",
    tagged_fraction: float = 0.8,
    body_words: int = 30,
    fake_posts: bool = True,
) -> Iterator[dict[str, object]]:
    """Questions (Title, Body HTML with a code block, Tags) followed by their answers, Ids
    increasing as in the dump; with ``fake_posts`` the two fabricated posts are appended.
    Every post text carries its Id (``post<Id>``), so tests can trace where a post went."""
    rng = random.Random(seed)
    next_id = 1
    for _ in range(n_questions):
        qid = next_id
        next_id += 1
        if rng.random() < tagged_fraction:
            tags = rng.sample(TOP10_TAGS, rng.choice((1, 1, 1, 2, 3))) + rng.sample(
                _OTHER_TAGS, rng.randint(0, 2)
            )
        else:
            tags = rng.sample(_OTHER_TAGS, rng.randint(1, 3))
        body = (
            f"<p>post{qid} {escape(_sentence(rng, body_words))} &amp; <code>x &lt; y</code></p>\n"
            f"<pre><code>def f{qid}(x):\n    return x + 1\n</code></pre>\n<p>{_sentence(rng, 8)}</p>\n"
        )
        yield {
            "Id": qid,
            "PostTypeId": 1,
            "AcceptedAnswerId": qid + 1 if answers_per_question else None,
            "CreationDate": "2016-01-01T00:00:00.000",
            "Score": rng.randint(-2, 50),
            "ViewCount": rng.randint(1, 9999),
            "Body": body,
            "OwnerUserId": rng.randint(1, 500),
            "LastActivityDate": "2016-01-02T00:00:00.000",
            "Title": f"title{qid} {_sentence(rng, 6)}",
            "Tags": format_tags(tags, tag_style),
            "AnswerCount": answers_per_question,
            "CommentCount": 0,
            "ContentLicense": "CC BY-SA 3.0",
        }
        for _ in range(answers_per_question):
            aid = next_id
            next_id += 1
            yield {
                "Id": aid,
                "PostTypeId": 2,
                "ParentId": qid,
                "CreationDate": "2016-01-01T01:00:00.000",
                "Score": rng.randint(0, 20),
                "Body": f"<p>post{aid} {escape(_sentence(rng, body_words))}</p>\n",
                "OwnerUserId": rng.randint(1, 500),
                "CommentCount": 0,
                "ContentLicense": "CC BY-SA 3.0",
            }
    # A tag-wiki excerpt (PostTypeId 4): neither question nor answer, must be skipped.
    yield {
        "Id": next_id,
        "PostTypeId": 4,
        "Body": "<p>tag wiki excerpt</p>",
        "ContentLicense": "CC BY-SA 3.0",
    }
    if fake_posts:
        yield {
            "Id": 1000000001,
            "PostTypeId": 1,
            "Title": "fabricated question post1000000001",
            "Body": "<p>fabricated post1000000001</p>",
            "Tags": format_tags(["python", "java"], tag_style),
            "ContentLicense": "CC BY-SA 4.0",
        }
        yield {
            "Id": 1000000010,
            "PostTypeId": 2,
            "ParentId": 1000000001,
            "Body": "<p>fabricated post1000000010</p>",
            "ContentLicense": "CC BY-SA 4.0",
        }


def write_wikipedia_xml(handle: IO[str], pages: Iterable[tuple[int, str, int, str]]) -> None:
    """A ``pages-articles`` export (schema 0.10) with (page id, title, namespace, wikitext) pages."""
    handle.write(
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.10/ http://www.mediawiki.org/xml/export-0.10.xsd" '
        'version="0.10" xml:lang="en">\n'
        "  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>enwiki</dbname>\n"
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>\n    <generator>MediaWiki 1.41</generator>\n"
        '    <case>first-letter</case>\n    <namespaces>\n      <namespace key="0" case="first-letter" />\n'
        '      <namespace key="1" case="first-letter">Talk</namespace>\n'
        '      <namespace key="2" case="first-letter">User</namespace>\n    </namespaces>\n  </siteinfo>\n'
    )
    for page_id, title, ns, text in pages:
        handle.write(
            f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>\n"
            f"    <revision>\n      <id>{page_id * 10}</id>\n      <parentid>{page_id * 10 - 1}</parentid>\n"
            "      <timestamp>2023-01-01T00:00:00Z</timestamp>\n"
            "      <contributor>\n        <username>Editor</username>\n        <id>7</id>\n      </contributor>\n"
            "      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f'      <text bytes="{len(text.encode())}" xml:space="preserve">{escape(text)}</text>\n'
            "      <sha1>0000000000000000000000000000000</sha1>\n    </revision>\n  </page>\n"
        )
    handle.write("</mediawiki>\n")


def synthetic_articles(n: int, seed: int = 0, paragraphs: int = 4) -> Iterator[tuple[int, str, int, str]]:
    """Articles with wikitext markup (links, templates, refs, headings, a category); every 10th page
    is a talk page (namespace 1) that the reader must skip."""
    rng = random.Random(seed)
    for page_id in range(1, n + 1):
        ns = 1 if page_id % 10 == 0 else 0
        paras = "\n\n".join(
            f"'''Article{page_id}''' {_sentence(rng, 20)} [[Link target|{rng.choice(_WORDS)}]] "
            f"{_sentence(rng, 15)}<ref>{{{{cite web|url=http://x.org}}}}</ref>."
            for _ in range(paragraphs)
        )
        text = f"{{{{Infobox thing|name=A{page_id}}}}}\n{paras}\n\n== Section ==\n{_sentence(rng, 25)}\n\n[[Category:Things]]"
        yield page_id, f"Article {page_id}", ns, text


def write_file(path: str | Path, writer, *args) -> Path:
    """Write with ``writer(handle, *args)`` to ``path``; ``.bz2`` paths are compressed."""
    import bz2

    path = Path(path)
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        writer(handle, *args)
    return path
