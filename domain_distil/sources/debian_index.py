"""Debian archive indices (deb822, parsed with python-debian): the ``Packages`` file (package ->
Description-md5, debtags) and the ``Translation-<code>`` files (Description-md5 -> description in
one language); see docs/debian.md.

apt may store the index files compressed (``Acquire::GzipIndexes``; Debian's container images use
lz4): gzip, xz and bzip2 are read with the standard library, anything else through
``apt-helper cat-file``, which reads every compression apt itself writes.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from debian.deb822 import Deb822

from domain_distil.common.errors import UserInputError

APT_HELPER = "/usr/lib/apt/apt-helper"
_STDLIB_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


class DebianIndexError(UserInputError):
    """An index file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True)
class PackageEntry:
    name: str
    description_md5: str
    tags: tuple[str, ...]


def open_index(path: str | Path) -> IO[str]:
    """The index file as UTF-8 text, whatever compression apt stored it with."""
    path = Path(path)
    if not path.is_file():
        raise DebianIndexError(f"Debian index file not found: {path}")
    opener = _STDLIB_OPENERS.get(path.suffix)
    if opener is not None:
        return io.TextIOWrapper(opener(path, "rb"), encoding="utf-8")
    if path.suffix in {".lz4", ".zst", ".lzma", ".Z"}:
        helper = shutil.which("apt-helper") or APT_HELPER
        if not Path(helper).exists():
            raise DebianIndexError(f"{path}: {path.suffix} index needs apt's apt-helper to decompress; not found")
        raw = subprocess.run([helper, "cat-file", str(path)], check=True, capture_output=True).stdout
        return io.StringIO(raw.decode("utf-8"))
    return open(path, encoding="utf-8")


def _paragraphs(path: str | Path, fields: list[str] | None = None) -> Iterator[Deb822]:
    with open_index(path) as handle:
        yield from Deb822.iter_paragraphs(handle, fields=fields, use_apt_pkg=False)


def split_tags(value: str) -> tuple[str, ...]:
    """``Tag: a::b, c::d,\\n e::f`` -> ("a::b", "c::d", "e::f")."""
    return tuple(tag.strip() for tag in value.replace("\n", " ").split(",") if tag.strip())


def read_packages(paths: list[str | Path]) -> dict[str, PackageEntry]:
    """Every package of the ``Packages`` files (first occurrence wins across files/architectures)."""
    packages: dict[str, PackageEntry] = {}
    for path in paths:
        seen_md5 = False
        for para in _paragraphs(path, ["Package", "Description-md5", "Tag"]):
            name = para.get("Package")
            md5 = para.get("Description-md5")
            if not name or not md5:
                continue
            seen_md5 = True
            if name not in packages:
                packages[name] = PackageEntry(name, md5, split_tags(para.get("Tag", "")))
        if not seen_md5:
            raise DebianIndexError(
                f"{path}: no paragraph with Package and Description-md5; is this a Debian Packages index?"
            )
    return packages


def description_text(raw: str) -> str:
    """A deb822 description as plain text: the synopsis, then the long description, whose lines
    start with a space and whose paragraph breaks are lines holding only " ."."""
    synopsis, _, body = raw.partition("\n")
    lines = [line.strip() for line in body.split("\n")]
    paragraphs = " ".join("" if line == "." else line for line in lines)
    synopsis = synopsis.strip()
    if synopsis and synopsis[-1] not in ".!?。":
        synopsis += "."
    return " ".join(f"{synopsis} {paragraphs}".split())


def read_translations(path: str | Path, code: str) -> dict[str, str]:
    """Description-md5 -> plain-text description from a ``Translation-<code>`` file."""
    field = f"Description-{code}"
    out: dict[str, str] = {}
    for para in _paragraphs(path, ["Description-md5", field]):
        md5, text = para.get("Description-md5"), para.get(field)
        if md5 and text:
            out[md5] = description_text(text)
    if not out:
        raise DebianIndexError(f"{path}: no paragraph with Description-md5 and {field}; wrong file or language code?")
    return out
