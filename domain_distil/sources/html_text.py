"""Stack Exchange post bodies (rendered HTML) to one line of plain text, with a code policy."""

from __future__ import annotations

import re
from html import unescape
from typing import Literal

import lxml.etree

CodePolicy = Literal["keep", "drop", "placeholder"]
CODE_POLICIES = ("keep", "drop", "placeholder")

# A reader sees a break at these tags; without a separator "<p>a</p><p>b</p>" would read "ab".
# Spaces are put around them in the source, which is cheaper than walking the tree in Python
# (this runs on every post of a 90 GB dump).
_BLOCK_TAG = re.compile(
    r"(</?(?:p|div|pre|blockquote|li|ul|ol|h[1-6]|tr|td|th|table|thead|tbody|dd|dt|dl|br|hr)\b[^>]*>)",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]*>")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# huge_tree: without it libxml2 drops a text node over 10 MB and the post would silently read as "".
_PARSER = lxml.etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True, huge_tree=True)


def _replace(elements: list[lxml.etree._Element], policy: CodePolicy, placeholder: str) -> None:
    """Put the placeholder (or, for ``drop``, nothing) where each element was, keeping the text after
    it (its tail), as lxml.html's ``drop_tree`` does; that parser's element lookup slows every post."""
    text = placeholder if policy == "placeholder" else ""
    for element in elements:
        parent, previous = element.getparent(), element.getprevious()
        joined = f" {text} {element.tail or ''}"
        if previous is not None:
            previous.tail = (previous.tail or "") + joined
        else:
            parent.text = (parent.text or "") + joined
        parent.remove(element)


def html_to_text(html: str, code: CodePolicy = "keep", inline_code: CodePolicy = "keep",
                 placeholder: str = "[CODE]") -> str:
    """Visible text of an HTML fragment, whitespace collapsed to single spaces (one line).

    ``code`` applies to code blocks (``<pre>``, usually ``<pre><code>``); ``inline_code`` to
    ``<code>`` inside running text. ``keep`` keeps the code text, ``drop`` removes it,
    ``placeholder`` replaces each block or span by ``placeholder``. The XML parser has already
    decoded the dump's escaping; the HTML parser decodes the entities inside the HTML.
    """
    if code not in CODE_POLICIES or inline_code not in CODE_POLICIES:
        raise ValueError(f"code policies must be one of {CODE_POLICIES}, got code={code!r}, "
                         f"inline_code={inline_code!r}")
    if not html or not html.strip():
        return ""
    spaced = _BLOCK_TAG.sub(r" \1 ", html)
    root = lxml.etree.fromstring(f"<div>{spaced}</div>", _PARSER)
    if root is None:  # nothing lxml can build a tree from: strip tags instead
        return " ".join(unescape(_TAG.sub(" ", _COMMENT.sub(" ", html))).split())
    # Blocks first, so the inline rule never sees a <code> inside a removed <pre>.
    if code != "keep" and "<pre" in html:
        _replace(root.xpath("//pre"), code, placeholder)
    if inline_code != "keep" and "<code" in html:
        _replace(root.xpath("//code[not(ancestor::pre)]"), inline_code, placeholder)
    return " ".join("".join(root.itertext()).split())
