"""Find a corpus's files per language and stream its documents (one per line, or per paragraph)."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from domain_distil.common.errors import UserInputError

SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")


class CorpusError(UserInputError):
    """Bad corpus input; the message names the file (and line) and what was expected."""


def _language_of(path: Path) -> str | None:
    return next((path.name[: -len(suffix)] for suffix in SUFFIXES if path.name.endswith(suffix)), None)


def discover_files(directory: str | Path | None, files: Mapping[str, list[str] | str] | None = None,
                   languages: list[str] | None = None) -> dict[str, list[Path]]:
    """Map language -> files. ``files`` entries win over what ``directory`` holds for a language."""
    found: dict[str, list[Path]] = {}
    if directory:
        root = Path(directory)
        if not root.is_dir():
            raise CorpusError(f"corpus.dir={root} is not a folder (expected <lang>.txt / <lang>.jsonl files in it)")
        for entry in sorted(root.iterdir()):
            if entry.is_dir():
                inner = sorted(p for p in entry.iterdir() if p.is_file() and _language_of(p) is not None)
                if inner:
                    found[entry.name] = inner
            elif (lang := _language_of(entry)) is not None:
                found.setdefault(lang, []).append(entry)
    for lang, paths in (files or {}).items():
        resolved = [Path(p) for p in ([paths] if isinstance(paths, str) else paths)]
        for path in resolved:
            if not path.is_file():
                raise CorpusError(f"corpus.files.{lang}: {path} does not exist")
            if not path.name.endswith(SUFFIXES):
                raise CorpusError(f"corpus.files.{lang}: {path} must end with one of {', '.join(SUFFIXES)}")
        found[lang] = resolved
    if languages:
        missing = [lang for lang in languages if lang not in found]
        if missing:
            raise CorpusError(f"corpus.languages asks for {missing} but no files were found for them "
                              f"(have {sorted(found)})")
        found = {lang: found[lang] for lang in languages}
    if not found:
        raise CorpusError(
            f"The corpus is empty: no {'/'.join(SUFFIXES)} files in corpus.dir={directory} and corpus.files is empty. "
            "Point corpus.dir at a folder of <lang>.txt files (one document per line).")
    for lang, paths in found.items():
        for path in paths:
            refuse_empty_file(path, lang)
    return found


def refuse_empty_file(path: Path, lang: str) -> None:
    """A corpus file without a single byte of text is a mistake (an export that failed, a wrong
    file): say so by name before any work, instead of distilling with one language fewer."""
    with _open_binary(path) as raw:
        try:
            empty = not raw.read(1)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise CorpusError(f"{path}: truncated or corrupt gzip stream ({error})") from None
    if empty:
        raise CorpusError(f"{path}: the corpus file of language {lang!r} is empty (0 bytes"
                          f"{' uncompressed' if path.name.endswith('.gz') else ''}); add its text "
                          "(one document per line) or remove the file")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


SEPARATORS = ("line", "blank_line")
ENCODING_ERRORS = ("strict", "replace")


# One document as ``(text, n_bytes, line)``, or one empty line (``text == ""``) so that callers can
# count what was skipped. ``n_bytes`` is the uncompressed size of the lines it was read from
# (newlines included), so the ``n_bytes`` of everything a file yields sum to its uncompressed
# size; ``line`` is the 1-based number of its first line. A plain tuple: a NamedTuple per line
# costs a measurable share of the reading time.
Document = tuple[str, int, int]


def _invalid_utf8(path: Path, raw_line: bytes, line_no: int, offset: int, error: UnicodeDecodeError) -> CorpusError:
    return CorpusError(
        f"{path}:{line_no}: invalid UTF-8 (byte 0x{raw_line[error.start]:02x} at byte offset "
        f"{offset + error.start} of the {'uncompressed ' if path.name.endswith('.gz') else ''}file: "
        f"{error.reason}). Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or set "
        "corpus.encoding_errors=replace to read such bytes as U+FFFD.")


def _jsonl_text(line: str, path: Path, line_no: int, text_field: str) -> str:
    if not line.strip():
        return ""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}:{line_no}: invalid JSON ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        raise CorpusError(f"{path}:{line_no}: expected an object with a string field {text_field!r}")
    return record[text_field].replace("\n", " ").strip()


def _lines(path: Path, text_field: str, encoding_errors: str) -> Iterator[Document]:
    """Every line as ``(text, n_bytes, line)``, stripped (JSONL: the record's text field)."""
    is_jsonl = ".jsonl" in path.name
    line_no, offset, raw_line = 0, 0, b""
    with _open_binary(path) as raw:
        try:
            # Binary lines decoded one by one, not a TextIOWrapper: that decodes 8 KiB chunks ahead
            # of the line it hands out, so its errors named a line before the bad byte.
            for line_no, raw_line in enumerate(raw, start=1):
                text = raw_line.decode("utf-8", encoding_errors)
                text = _jsonl_text(text, path, line_no, text_field) if is_jsonl else text.strip()
                yield text, len(raw_line), line_no
                offset += len(raw_line)
        except UnicodeDecodeError as error:
            raise _invalid_utf8(path, raw_line, line_no, offset, error) from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise CorpusError(f"{path}: truncated or corrupt gzip stream after line {line_no} ({error})") from None


def _paragraphs(lines: Iterator[Document]) -> Iterator[Document]:
    """Join runs of non-empty lines into one document each; the empty lines pass through."""
    pending: list[str] = []
    pending_bytes, pending_line = 0, 0
    for text, n_bytes, line_no in lines:
        if text:
            pending.append(text)
            pending_bytes += n_bytes
            pending_line = pending_line or line_no
            continue
        if pending:
            yield " ".join(pending), pending_bytes, pending_line
            pending, pending_bytes, pending_line = [], 0, 0
        yield text, n_bytes, line_no
    if pending:
        yield " ".join(pending), pending_bytes, pending_line


def check_reading(separator: str, encoding_errors: str) -> None:
    """Refuse a ``corpus.document_separator`` or ``corpus.encoding_errors`` the reader does not know."""
    if separator not in SEPARATORS:
        raise CorpusError(f"corpus.document_separator must be one of {SEPARATORS}, got {separator!r}")
    if encoding_errors not in ENCODING_ERRORS:
        raise CorpusError(f"corpus.encoding_errors must be one of {ENCODING_ERRORS}, got {encoding_errors!r}")


def read_documents(
    path: Path, text_field: str = "text", separator: str = "line", encoding_errors: str = "strict"
) -> Iterator[Document]:
    """Yield every document of ``path`` in file order, and ``("", n_bytes, line)`` per empty line.

    ``separator="line"``: one document per line. ``"blank_line"``: a document is a run of non-empty
    lines, joined with spaces, ended by an empty line (paragraph-per-line text files). JSONL files
    always hold one document per record; ``separator`` does not apply to them.
    """
    check_reading(separator, encoding_errors)
    lines = _lines(path, text_field, encoding_errors)
    return _paragraphs(lines) if separator == "blank_line" and ".jsonl" not in path.name else lines


def iter_documents(
    path: Path, text_field: str = "text", separator: str = "line", encoding_errors: str = "strict"
) -> Iterator[tuple[str, int]]:
    """Yield ``(document, bytes_consumed)`` for each non-empty document of ``path``; uncompressed bytes,
    so progress and GB budgets agree."""
    for text, n_bytes, _ in read_documents(path, text_field, separator, encoding_errors):
        if text:
            yield text, n_bytes


def uncompressed_size(path: Path) -> int | None:
    """Size for progress bars: exact for plain files, unknown (None) for gzip."""
    return None if path.name.endswith(".gz") else path.stat().st_size
