"""Byte streams for the dump readers: a position-counting reader, 7z members streamed without
unpacking to disk, and the error every reader raises when its input is broken."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import py7zr
from py7zr.io import WriterFactory

from domain_distil.common.errors import UserInputError


class MalformedInputError(UserInputError):
    """Input that cannot be read to the end; the message names the file and the position."""


class CountingReader:
    """Wrap a binary stream and count the bytes handed out, so errors can name a byte offset
    and progress bars can show how far through a stream (a pipe has no ``tell``) the parser is."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.position += len(data)
        return data


class _PipeFactory(WriterFactory):
    """Hands py7zr the pipe's write end as the member's output file; py7zr writes, flushes and
    closes it, and does not rewind it because a pipe is not seekable."""

    def __init__(self, pipe: BinaryIO) -> None:
        self._pipe = pipe

    def create(self, filename: str) -> BinaryIO:  # type: ignore[override]
        return self._pipe


def find_7z_member(archive: str | Path, basename: str) -> tuple[str, int]:
    """Name and uncompressed size of the member whose file name is ``basename`` (case-insensitive)."""
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            infos = z.list()
    except (py7zr.exceptions.ArchiveError, EOFError, OSError, ValueError) as error:
        size = Path(archive).stat().st_size if Path(archive).exists() else 0
        raise MalformedInputError(
            f"{archive}: not a readable 7z archive ({type(error).__name__}: {error}); "
            f"the file has {size} bytes; is the download complete?"
        ) from error
    for info in infos:
        if Path(info.filename).name.lower() == basename.lower() and not info.is_directory:
            return info.filename, int(info.uncompressed)
    names = ", ".join(i.filename for i in infos[:20])
    raise MalformedInputError(f"{archive}: no member named {basename} (members: {names})")


@contextmanager
def open_7z_member(archive: str | Path, member: str) -> Iterator[BinaryIO]:
    """Stream one member of a 7z archive as a readable binary file, decompressing in a thread.

    py7zr 1.x only pushes decompressed data into writer objects; an OS pipe turns that push into
    the pull that ``lxml.etree.iterparse`` needs, in bounded memory (the pipe's buffer) and
    without writing the member to disk. Leaving the ``with`` block early closes the read end,
    which stops the extraction (its next write fails); a decompression error is raised when the
    block is left normally or with a parse error (the parser saw the stream end where
    decompression stopped), never in place of another exception.
    """
    read_fd, write_fd = os.pipe()
    errors: list[MalformedInputError] = []

    def extract() -> None:
        try:  # closing the write end, whatever happens, is what ends the reader's stream
            with open(write_fd, "wb") as pipe, py7zr.SevenZipFile(archive, mode="r") as z:
                z.extract(targets=[member], factory=_PipeFactory(pipe))
        except BrokenPipeError:  # the reader left early
            pass
        except BaseException as error:  # handed to the consumer thread, raised there
            errors.append(MalformedInputError(
                f"{archive}: decompressing {member} failed ({type(error).__name__}: {error})"))

    thread = threading.Thread(target=extract, name=f"7z:{Path(archive).name}", daemon=True)
    thread.start()
    reader = open(read_fd, "rb")
    body_error: BaseException | None = None
    try:
        yield reader
    except BaseException as error:
        body_error = error
        raise
    finally:
        reader.close()
        thread.join()
        # Only an end the stream explains (a parse error where decompression stopped) gives way to the
        # decompression error; the consumer's own exception, or its leaving early, is not masked.
        if errors and (body_error is None or isinstance(body_error, SyntaxError | MalformedInputError)):
            raise errors[0] from body_error
