"""corpus=debian on tiny synthetic archives in Debian's real formats (no network): deb822
``Packages`` with ``Tag:``, ``Translation-<code>`` files (one gzipped, like apt may store them),
and .debs built with ``dpkg-deb -b`` holding fortune files and a gzipped man page."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import open_dict

from domain_distil.sources import debian_text
from domain_distil.sources.debian_index import description_text, read_packages, read_translations
from domain_distil.sources.td_task import TaskSamplingError
from domain_distil.tasks import prepare
from domain_distil.tasks.debian_td import prepared_corpora

TAGS = ["role::program", "interface::commandline", "uitoolkit::gtk", "special::not-yet-tagged"]
N_PACKAGES = 80


def _tags(i: int) -> list[str]:
    tags = ["role::program"] if i % 2 == 0 else []
    tags += ["interface::commandline"] if i % 3 == 0 else []
    tags += ["uitoolkit::gtk"] if i % 5 == 0 else []
    tags += ["special::not-yet-tagged"] * (i % 7 == 0)
    return tags


def write_archive(root: Path) -> dict[str, object]:
    """Packages (pkg0..pkg79; every other one untagged-or-tagged by i), English descriptions for all,
    Spanish for the even-numbered and every fifth package (gzipped file), one pt_BR + pt fallback."""
    packages, en, es, pt_br, pt = [], [], [], [], []
    for i in range(N_PACKAGES):
        md5 = f"{i:032x}"
        para = [f"Package: pkg{i}", "Version: 1.0-1", "Architecture: all", f"Description: tool {i}", f"Description-md5: {md5}"]
        tags = _tags(i)
        if tags:
            para.append("Tag: " + ",\n ".join(tags))
        packages.append("\n".join(para))
        en.append(f"Package: pkg{i}\nDescription-md5: {md5}\nDescription-en: tool {i}\n does thing {i}.\n .\n Second paragraph.")
        if i % 2 == 0 or i % 5 == 0:
            es.append(f"Package: pkg{i}\nDescription-md5: {md5}\nDescription-es: herramienta {i}\n hace la cosa {i}.")
        if i < 30:
            (pt_br if i % 2 else pt).append(f"Package: pkg{i}\nDescription-md5: {md5}\nDescription-{'pt_BR' if i % 2 else 'pt'}: ferramenta {i}\n faz {i}.")
    root.mkdir(parents=True, exist_ok=True)
    (root / "Packages").write_text("\n\n".join(packages) + "\n", encoding="utf-8")
    (root / "Translation-en").write_text("\n\n".join(en) + "\n", encoding="utf-8")
    with gzip.open(root / "Translation-es.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n\n".join(es) + "\n")
    (root / "Translation-pt_BR").write_text("\n\n".join(pt_br) + "\n", encoding="utf-8")
    (root / "Translation-pt").write_text("\n\n".join(pt) + "\n", encoding="utf-8")
    return {"packages": [str(root / "Packages")],
            "translations": {"en": str(root / "Translation-en"), "es": str(root / "Translation-es.gz"),
                             "pt_BR": str(root / "Translation-pt_BR"), "pt": str(root / "Translation-pt")}}


def build_deb(root: Path, name: str, files: dict[str, bytes]) -> Path:
    tree = root / f"{name}-tree"
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.org>\nDescription: test\n")
    deb = root / f"{name}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb (Debian/Ubuntu) needed")


def test_index_readers_join_descriptions_and_tags(tmp_path: Path) -> None:
    files = write_archive(tmp_path)
    packages = read_packages(files["packages"])
    assert len(packages) == N_PACKAGES
    assert packages["pkg30"].tags == ("role::program", "interface::commandline", "uitoolkit::gtk")
    assert packages["pkg1"].tags == ()
    es = read_translations(files["translations"]["es"], "es")  # gzipped, as apt may store it
    assert len(es) == sum(1 for i in range(N_PACKAGES) if i % 2 == 0 or i % 5 == 0)
    en = read_translations(files["translations"]["en"], "en")
    assert en[packages["pkg4"].description_md5] == "tool 4. does thing 4. Second paragraph."
    assert description_text("Editor\n line one\n .\n line two") == "Editor. line one line two"


@needs_dpkg
def test_prepare_builds_disjoint_task_corpus_and_general_text(tmp_path: Path, make_cfg) -> None:
    files = write_archive(tmp_path / "archive")
    fortunes = "Saying one\nover two lines\n%\nSaying two\n%\n"
    debs = {
        "fortunes": build_deb(tmp_path, "fortunes", {
            "usr/share/games/fortunes/wisdom": fortunes.encode(),
            "usr/share/games/fortunes/wisdom.dat": b"\x00\x01",
            "usr/share/games/fortunes/linux": b"about computers\n%\n"}),
        "fortunes-es": build_deb(tmp_path, "fortunes-es", {
            "usr/share/games/fortunes/es/refranes": "Refrán uno\n%\nRefrán dos\n%\nRefrán tres\n".encode(),
            "usr/share/games/fortunes/off/es/malo": b"left out\n%\n"}),
        "manpages-es": build_deb(tmp_path, "manpages-es", {
            "usr/share/man/es/man1/ls.1.gz": gzip.compress(b".TH LS 1\n.SH NOMBRE\nls \\- lista ficheros\n"),
            "usr/share/man/es/man1/dir.1.gz": gzip.compress(b".so man1/ls.1\n")}),
    }
    cfg = make_cfg("task=prepare", "corpus=debian", "corpus.languages=[eng,esp,por]",
                   "corpus.source.task.top_k=3", "corpus.source.task.sizes={test: 6, val: 4, train: 10}",
                   "corpus.source.task.min_per_tag={test: 1, val: 1, train: 0}")
    with open_dict(cfg):
        cfg.corpus.source.indices = files
        cfg.corpus.source.debs = {k: str(v) for k, v in debs.items()}
        cfg.corpus.source.general.packages = {"eng": ["fortunes"], "esp": ["fortunes-es"], "por": []}
        cfg.corpus.source.manpages = {"esp": {"package": "manpages-es", "dir": "es"}}
    manifest = prepare.run(cfg)
    root = Path(cfg.corpus.prepared_dir)

    task = manifest["tasks"]["debian_tags"]
    assert task["labels"] == ["role::program", "interface::commandline", "uitoolkit::gtk"]  # special:: left out
    rows = [json.loads(line) for line in (root / task["file"]).read_text().splitlines()]
    for lang in ("eng", "esp", "por"):
        mine = [r for r in rows if r["lang"] == lang]
        assert Counter(r["split"] for r in mine) == {"test": 6, "val": 4, "train": 10}
        assert len({r["id"] for r in mine}) == 20  # disjoint by package within the language
        assert all(r["labels"] for r in mine)
    in_any_split = {r["id"].split(":", 1)[1] for r in rows}
    described = {"eng": set(range(N_PACKAGES)), "esp": {i for i in range(N_PACKAGES) if i % 2 == 0 or i % 5 == 0},
                 "por": set(range(30))}  # Portuguese: pt_BR, falling back to pt
    for lang, prefix in (("eng", "tool "), ("esp", "herramienta "), ("por", "ferramenta ")):
        corpus = (root / "corpus" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        in_corpus = {f"pkg{int(line.split('.')[0].removeprefix(prefix))}" for line in corpus}
        # every other described package, and none used by any language's split
        assert in_corpus == {f"pkg{i}" for i in described[lang]} - in_any_split
        assert manifest["languages"][lang]["corpus"]["documents"] == len(corpus)
        assert manifest["languages"][lang]["descriptions"] == len(described[lang])
    assert manifest["languages"]["por"]["descriptions"] == 30

    general = {lang: manifest["languages"][lang]["general"] for lang in ("eng", "esp", "por")}
    assert general["eng"]["documents"] == 2 and general["esp"]["documents"] == 3 and general["por"]["documents"] == 0
    assert sorted((root / "general" / "eng.txt").read_text().splitlines()) == ["Saying one over two lines", "Saying two"]
    man = manifest["languages"]["esp"]["manpages"]
    assert man["documents"] == 1  # the .so redirect is not a page
    assert "lista ficheros" in (root / "manpages" / "esp.txt").read_text(encoding="utf-8")
    assert manifest["languages"]["eng"]["manpages"]["documents"] == 0
    assert prepared_corpora(root, "debian_tags") == (root / "corpus", root / "general")


def test_sampling_names_the_language_when_a_tag_is_too_rare(tmp_path: Path, make_cfg) -> None:
    files = write_archive(tmp_path / "archive")
    cfg = make_cfg("task=prepare", "corpus=debian", "corpus.languages=[esp]", "corpus.source.task.top_k=3",
                   "corpus.source.task.sizes={test: 40, val: 4, train: 10}",
                   "corpus.source.task.min_per_tag={test: 17, val: 1, train: 0}",  # 16 carry uitoolkit::gtk
                   "corpus.source.general.packages={}", "corpus.source.manpages=null")
    with open_dict(cfg):
        cfg.corpus.source.indices = files
    with pytest.raises(TaskSamplingError, match=r"esp .*'uitoolkit::gtk' at least 17 times"):
        prepare.run(cfg)


def test_missing_prepared_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="task=prepare corpus=debian"):
        prepared_corpora(tmp_path / "nothing", "debian_tags")


def test_roff_fallback_keeps_text_and_drops_requests() -> None:
    source = '.\\" comment\n.TH LS 1\n.SH NAME\nls \\- list \\fBdirectory\\fR contents\n.B \\-a\n'
    text = debian_text.render_man(source, use_groff=False)
    assert text == "NAME ls - list directory contents -a"
    assert debian_text.render_man(".so man1/ls.1\n", use_groff=False) == ""
