"""Text from unpacked Debian packages: fortune files (general text, one fortune per document) and
manual pages (one page per document, rendered by groff when it is installed, else stripped of
roff requests by a small fallback).
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from domain_distil.sources.writers import document_line

FORTUNE_DIR = Path("usr/share/games/fortunes")
MAN_DIR = Path("usr/share/man")
# groff: UTF-8 input (-k), tables (-t), man macros, UTF-8 output without bold/underline overstrikes or
# colour escapes (-P-cbou), no hyphenation (-rHY=0) and long lines so words are not split.
GROFF = ["groff", "-k", "-t", "-mandoc", "-Tutf8", "-rHY=0", "-rLL=250n", "-P-cbou"]


def fortune_files(root: Path) -> list[Path]:
    """The fortune text files under an unpacked package: not the ``.dat`` index, not the ``.u8``
    links, not the offensive ``off/`` section."""
    base = root / FORTUNE_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.suffix not in {".dat", ".u8"} and "off" not in p.relative_to(base).parts)


def fortunes(path: Path) -> Iterator[str]:
    """One document per fortune (fortune files separate them by lines holding only ``%``)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    for chunk in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        line = document_line(chunk)
        if line:
            yield line


def man_pages(root: Path, lang_dir: str | None) -> list[Path]:
    """The real pages (no symlinks, no ``.so`` redirects) under ``usr/share/man/<lang_dir>``;
    ``lang_dir=None`` = the untranslated pages directly under ``usr/share/man/man*``."""
    base = root / MAN_DIR / lang_dir if lang_dir else root / MAN_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob("man*/*") if p.is_file() and not p.is_symlink())


def read_roff(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def render_man(source: str, use_groff: bool) -> str:
    """The page as one document line; '' for a ``.so`` redirect."""
    if source.lstrip().startswith(".so "):
        return ""
    if use_groff:
        done = subprocess.run(GROFF, input=source.encode("utf-8"), capture_output=True)
        text = done.stdout.decode("utf-8", errors="replace")
    else:
        text = strip_roff(source)
    return document_line(text.replace("\u2010", "-").replace("\u2212", "-"))


_ESCAPES = re.compile(r"\\f(\[[^]]*]|\(..|.)|\\\(..|\\\[[^]]*]|\\[&|^%:]|\\s[-+]?\d")


def strip_roff(source: str) -> str:
    """Fallback without groff: drop requests and comments, keep the arguments of font macros."""
    out: list[str] = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].partition(" ")
            if macro in {"B", "I", "BI", "BR", "IB", "IR", "RB", "RI", "SH", "SS", "TP", "IP"} and rest:
                line = rest.replace('"', "")
            else:
                continue
        line = _ESCAPES.sub("", line).replace("\\-", "-").replace("\\e", "\\")
        out.append(line)
    return "\n".join(out)


def has_groff() -> bool:
    return shutil.which("groff") is not None
