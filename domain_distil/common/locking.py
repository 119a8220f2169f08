"""Cache entries that several processes (sweep jobs, DDP ranks, nodes on a shared disk) may build at once.

Every entry: take an exclusive file lock named after it, look again (another process may have
finished it meanwhile), build into a folder private to this process and rename it into place, so
readers never see a half-built entry. ``flock`` locks die with their process: no stale locks.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)


# Lock files this thread holds now. ``flock`` locks belong to an open file, so a second FileLock on
# a path the same thread already holds would wait for itself forever; a nested ``entry_lock`` (a
# caller locks an entry, then calls a writer such as ``export_model`` that locks it again) passes.
_held = threading.local()


def _held_paths() -> set[Path]:
    if not hasattr(_held, "paths"):
        _held.paths = set()
    return _held.paths


@contextmanager
def entry_lock(target: str | Path) -> Iterator[None]:
    """Hold the exclusive build lock of ``target``, waiting for another builder; re-entrant within a
    thread. The outermost one removes the lock file on the way out, so a cache holds only entries."""
    target = Path(target)
    path = (target.parent / f".{target.name}.lock").absolute()  # a sibling: never inside the entry
    held = _held_paths()
    if path in held:
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    log.debug("taking the build lock of %s", target)
    with FileLock(str(path)):
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
            # The lock file goes while we still hold it. filelock (>= 4) re-opens the path when the
            # inode it finally locked has been unlinked, so every waiter ends up on one lock file;
            # with an older filelock two waiters could build at once after a failed build, and
            # build_entry's check before its rename keeps the first complete entry.
            path.unlink(missing_ok=True)


def private_temp_path(target: str | Path) -> Path:
    """A temporary sibling of ``target`` that no other process uses (pid + random suffix)."""
    target = Path(target)
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def build_entry(
    target: str | Path,
    build: Callable[[Path], None],
    is_complete: Callable[[Path], bool] = Path.exists,
) -> Path:
    """Return ``target``, building it under its lock when it is not complete yet.

    ``build(tmp)`` writes the entry into the empty folder ``tmp``; on success ``tmp`` is renamed to
    ``target`` (an incomplete leftover at ``target`` is replaced); on failure ``tmp`` is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    if is_complete(target):
        return target
    with entry_lock(target):
        if is_complete(target):  # another process built it while we waited for the lock
            return target
        tmp = private_temp_path(target)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            if not is_complete(target):  # a racing builder may have won (entry_lock): keep its entry
                if target.exists():  # an incomplete entry from an older version or a crash
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
