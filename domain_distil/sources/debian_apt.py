"""apt in a private folder (docs/debian.md): download Debian's indices and packages without root and
without touching the system's apt state; the host's own package lists are never read, so an Ubuntu
machine gets Debian's archive too.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from domain_distil.common.errors import UserInputError
from domain_distil.common.locking import build_entry

log = logging.getLogger(__name__)


class AptError(UserInputError):
    """apt is missing, or a download step failed (the message carries apt's own error)."""


class PrivateApt:
    """apt-get with its state, cache and sources list in ``root``.

    :param root: the private folder (created).
    :param mirror: archive URL, e.g. ``http://deb.debian.org/debian``.
    :param suite: e.g. ``bookworm``; :param components: e.g. ``[main]``.
    :param keyring: the archive keyring that signs the suite (``signed-by``); on Ubuntu install
        ``debian-archive-keyring`` to get Debian's.
    :param translation_codes: Debian language codes for ``Acquire::Languages`` (``en``, ``pt_BR``).
    """

    def __init__(self, root: str | Path, mirror: str, suite: str, components: Sequence[str], keyring: str,
                 translation_codes: Sequence[str]) -> None:
        # apt resolves relative Dir:: paths against /etc/apt, not the working directory.
        self.root = Path(root).absolute()
        self.mirror, self.suite, self.components, self.keyring = mirror, suite, list(components), keyring
        self.codes = list(dict.fromkeys(translation_codes))

    def options(self) -> list[str]:
        state, cache = self.root / "state", self.root / "cache"
        return [
            "-o", f"Dir::State={state}", "-o", f"Dir::Cache={cache}",
            "-o", f"Dir::Etc::sourcelist={self.root / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Acquire::Languages={','.join(self.codes)}",
            # Only the private status; dpkg's own database is neither needed nor read.
            "-o", f"Dir::State::status={state / 'status'}",
        ]

    def _run(self, args: list[str], cwd: Path | None = None) -> str:
        if shutil.which(args[0]) is None:
            raise AptError(f"{args[0]} not found: corpus=debian downloads through apt (Debian or Ubuntu); "
                           "or give the index files and .debs by path (corpus.source.indices, corpus.source.debs)")
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            raise AptError(f"`{' '.join(args[:2])}` failed ({done.returncode}): {done.stderr.strip()[-800:]}")
        return done.stdout

    def prepare_folder(self) -> None:
        for sub in ("state/lists/partial", "cache/archives/partial", "debs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state" / "status").touch()
        line = f"deb [signed-by={self.keyring}] {self.mirror} {self.suite} {' '.join(self.components)}\n"
        (self.root / "sources.list").write_text(line, encoding="utf-8")
        if not Path(self.keyring).exists():
            raise AptError(f"corpus.source.apt.keyring: {self.keyring} does not exist (package debian-archive-keyring)")

    def update(self) -> None:
        self.prepare_folder()
        log.info("apt-get update into %s (%s %s, languages %s)", self.root, self.mirror, self.suite, self.codes)
        self._run(["apt-get", "update", *self.options()])

    def index_files(self) -> tuple[list[Path], dict[str, Path]]:
        """(Packages files, translation code -> Translation file) as apt stored them."""
        listing = self._run(["apt-get", "indextargets", *self.options(),
                             "--format", "$(CREATED_BY)\t$(LANGUAGE)\t$(FILENAME)"])
        packages: list[Path] = []
        translations: dict[str, Path] = {}
        for row in listing.splitlines():
            kind, lang, filename = (row.split("\t") + ["", "", ""])[:3]
            if not Path(filename).exists():
                continue
            if kind == "Packages":
                packages.append(Path(filename))
            elif kind == "Translations" and lang in self.codes:
                translations[lang] = Path(filename)
        if not packages:
            raise AptError(f"apt-get update left no Packages index under {self.root}; check the mirror and suite")
        return packages, translations

    def download(self, package: str) -> Path:
        """The package's .deb under ``root/debs/<package>/`` (downloaded once, then reused)."""
        target = self.root / "debs" / package

        def build(tmp: Path) -> None:
            self._run(["apt-get", "download", *self.options(), package], cwd=tmp)

        build_entry(target, build, is_complete=lambda p: any(p.glob("*.deb")))
        return next(target.glob("*.deb"))


def unpack_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x``: the package's files under ``dest``, nothing installed."""
    def build(tmp: Path) -> None:
        done = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if done.returncode != 0:
            raise AptError(f"dpkg-deb -x {deb} failed: {done.stderr.strip()[-400:]}")

    if shutil.which("dpkg-deb") is None:
        raise AptError("dpkg-deb not found: unpacking .deb files needs dpkg (Debian or Ubuntu)")
    build_entry(dest, build, is_complete=lambda p: p.is_dir())
    return dest
