"""Find a corpus's files per language and stream its documents (one per line)."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")


class CorpusError(ValueError):
    """Bad corpus input; the message names the file (and line) and what was expected."""


def _language_of(path: Path) -> str | None:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def discover_files(
    directory: str | Path | None,
    files: Mapping[str, list[str] | str] | None = None,
    languages: list[str] | None = None,
) -> dict[str, list[Path]]:
    """Map language -> files. ``files`` entries win over what ``directory`` holds for a language."""
    found: dict[str, list[Path]] = {}
    if directory:
        root = Path(directory)
        if not root.is_dir():
            raise CorpusError(
                f"corpus.dir={root} is not a folder (expected <lang>.txt / <lang>.jsonl files in it)"
            )
        for entry in sorted(root.iterdir()):
            if entry.is_dir():
                inner = sorted(p for p in entry.iterdir() if p.is_file() and _language_of(p) is not None)
                if inner:
                    found[entry.name] = inner
            elif (lang := _language_of(entry)) is not None:
                found.setdefault(lang, []).append(entry)
    for lang, paths in (files or {}).items():
        paths = [paths] if isinstance(paths, str) else list(paths)
        resolved = [Path(p) for p in paths]
        for path in resolved:
            if not path.is_file():
                raise CorpusError(f"corpus.files.{lang}: {path} does not exist")
            if _language_of(path) is None and not path.name.endswith(SUFFIXES):
                raise CorpusError(f"corpus.files.{lang}: {path} must end with one of {', '.join(SUFFIXES)}")
        found[lang] = resolved
    if languages:
        missing = [lang for lang in languages if lang not in found]
        if missing:
            raise CorpusError(
                f"corpus.languages asks for {missing} but no files were found for them (have {sorted(found)})"
            )
        found = {lang: found[lang] for lang in languages}
    if not found:
        raise CorpusError(
            f"The corpus is empty: no {'/'.join(SUFFIXES)} files in corpus.dir={directory} and corpus.files is empty. "
            "Point corpus.dir at a folder of <lang>.txt files (one document per line)."
        )
    return found


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def iter_documents(path: Path, text_field: str = "text") -> Iterator[tuple[str, int]]:
    """Yield ``(document, bytes_consumed)`` for each non-empty line of ``path``.

    ``bytes_consumed`` counts uncompressed bytes, so progress and GB budgets agree.
    """
    is_jsonl = ".jsonl" in path.name
    with _open_binary(path) as raw:
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")
        line_no = 0
        try:
            for line_no, line in enumerate(stream, start=1):
                n_bytes = len(line.encode("utf-8"))
                if is_jsonl:
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise CorpusError(f"{path}:{line_no}: invalid JSON ({error.msg})") from None
                    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                        raise CorpusError(
                            f"{path}:{line_no}: expected an object with a string field {text_field!r}"
                        )
                    text = record[text_field].replace("\n", " ").strip()
                else:
                    text = line.strip()
                if text:
                    yield text, n_bytes
        except UnicodeDecodeError as error:
            raise CorpusError(f"{path}: line {line_no + 1} is not valid UTF-8 ({error.reason})") from None
        except (EOFError, gzip.BadGzipFile) as error:
            raise CorpusError(
                f"{path}: truncated or corrupt gzip stream after line {line_no} ({error})"
            ) from None


def uncompressed_size(path: Path) -> int | None:
    """Size for progress bars: exact for plain files, unknown (None) for gzip."""
    return None if path.name.endswith(".gz") else path.stat().st_size
