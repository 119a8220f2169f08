"""Byte streams for the dump readers: a position-counting reader, 7z members streamed without
unpacking to disk, and the error every reader raises when its input is broken."""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import py7zr
from py7zr.io import Py7zIO, WriterFactory

from domain_distil.common.errors import UserInputError


class MalformedInputError(UserInputError):
    """Input that cannot be read to the end; the message names the file and the position."""


class _ReadableStream(io.RawIOBase):
    """A raw stream whose subclasses implement ``read``; ``readinto`` (what buffered readers call) uses it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class CountingReader(_ReadableStream):
    """Wrap a binary stream and count the bytes handed out, so errors can name a byte offset
    and progress bars can show how far through a file the parser is."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.position += len(data)
        return data

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Cancelled(Exception):
    """Raised inside the extraction thread when the consumer stopped reading."""


class _QueueWriter(Py7zIO):
    """Receives decompressed bytes from py7zr and hands them to the consumer through a bounded
    queue; a full queue blocks the extractor, so memory stays at ``maxsize`` chunks."""

    def __init__(self, chunks: queue.Queue, stop: threading.Event) -> None:
        self._chunks = chunks
        self._stop = stop
        self._size = 0

    def write(self, s: bytes | bytearray) -> int:
        data = bytes(s)
        while True:
            if self._stop.is_set():
                raise _Cancelled
            try:
                self._chunks.put(data, timeout=0.1)
                break
            except queue.Full:
                continue
        self._size += len(data)
        return len(data)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def seekable(self) -> bool:  # MemIO.close() rewinds seekable products; ours is a pipe
        return False

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return self._size


class _QueueFactory(WriterFactory):
    def __init__(self, chunks: queue.Queue, stop: threading.Event) -> None:
        self._chunks = chunks
        self._stop = stop

    def create(self, filename: str) -> Py7zIO:
        return _QueueWriter(self._chunks, self._stop)


class _QueueReader(_ReadableStream):
    """The consumer side: ``read(n)`` pulls chunks off the queue until the end marker."""

    _END = object()

    def __init__(self, chunks: queue.Queue, errors: list[BaseException]) -> None:
        self._chunks = chunks
        self._errors = errors
        self._pending = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            item = self._chunks.get()
            if item is self._END:
                self._done = True
                if self._errors:
                    raise self._errors[0]
                break
            self._pending += item
            if size >= 0:
                break
        if size < 0:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:size], self._pending[size:]
        return data


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
def open_7z_member(archive: str | Path, member: str, max_chunks: int = 16) -> Iterator[io.RawIOBase]:
    """Stream one member of a 7z archive as a readable binary file, decompressing in a thread.

    py7zr 1.x only pushes decompressed data into writer objects; a bounded queue turns that push
    into the pull that ``lxml.etree.iterparse`` needs, without writing the member to disk.
    Leaving the ``with`` block early cancels the extraction.
    """
    chunks: queue.Queue = queue.Queue(maxsize=max_chunks)
    stop = threading.Event()
    errors: list[BaseException] = []

    def extract() -> None:
        try:
            with py7zr.SevenZipFile(archive, mode="r") as z:
                z.extract(targets=[member], factory=_QueueFactory(chunks, stop))
        except _Cancelled:
            pass
        except BaseException as error:  # handed to the reader, raised in the consumer thread
            errors.append(MalformedInputError(
                f"{archive}: decompressing {member} failed ({type(error).__name__}: {error})"))
        finally:
            while True:  # the end marker must get through even when the queue is full
                try:
                    chunks.put(_QueueReader._END, timeout=0.1)
                    break
                except queue.Full:
                    if stop.is_set():
                        return

    thread = threading.Thread(target=extract, name=f"7z:{Path(archive).name}", daemon=True)
    thread.start()
    reader = _QueueReader(chunks, errors)
    try:
        yield reader
    finally:
        stop.set()
        # Drain so a producer blocked on put() sees the stop flag and exits.
        while thread.is_alive():
            try:
                chunks.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
