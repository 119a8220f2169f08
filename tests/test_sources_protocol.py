"""One interface for corpus sources: docs/architecture.md's "Add a corpus source" runs as written,
and every source in conf/corpus/ follows ``sources.source.CorpusSource``."""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf
from scripts import doc_blocks

from domain_distil.common.configs import config_dir
from domain_distil.common.io import read_json
from domain_distil.tasks import prepare

ROOT = Path(__file__).resolve().parent.parent


def _walkthrough_source(tmp_path: Path, monkeypatch) -> tuple[str, Path]:
    """The section's source module, imported under the name its YAML gives (nothing is written into the
    source tree), and its YAML as a config group file: (corpus name, search path)."""
    blocks = doc_blocks("docs/architecture.md", "Add a corpus source")
    # The Python file, imported under the name its YAML gives, without writing into the source tree.
    yaml = OmegaConf.create(blocks["yaml"])
    target, name = yaml.source._target_, yaml.name
    module_name = target.rsplit(".", 1)[0]
    module = types.ModuleType(module_name)
    exec(compile(blocks["python"], f"<{module_name}>", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module_name, module)
    conf = tmp_path / "conf"
    (conf / "corpus").mkdir(parents=True)
    (conf / "corpus" / f"{name}.yaml").write_text(blocks["yaml"], encoding="utf-8")
    return name, conf


def test_the_walkthrough_source_runs_through_task_prepare(make_cfg, tmp_path, monkeypatch) -> None:
    name, conf = _walkthrough_source(tmp_path, monkeypatch)
    (tmp_path / "en.txt").write_text("first English document\n\nsecond  one\n", encoding="utf-8")
    (tmp_path / "es.txt").write_text("un documento\n", encoding="utf-8")

    cfg = make_cfg("task=prepare", f"corpus={name}", f"hydra.searchpath=[file://{conf}]",
                   f"corpus.source.dumps.eng={tmp_path / 'en.txt'}", f"corpus.source.dumps.esp={tmp_path / 'es.txt'}")
    manifest = prepare.run(cfg)

    corpus = Path(cfg.corpus.dir)  # what task=distill reads
    assert (corpus / "eng.txt").read_text() == "first English document\nsecond one\n"
    assert (corpus / "esp.txt").read_text() == "un documento\n"
    assert manifest["source"] == name and manifest["languages"]["eng"]["corpus"] == {
        "file": "corpus/eng.txt", "documents": 2, "bytes": len("first English document\nsecond one\n")}
    assert read_json(Path(cfg.corpus.prepared_dir) / "manifest.json") == manifest
    assert "max_seq_length" in cfg.corpus  # the same file is the distillation corpus config


def test_an_unset_dump_stops_only_a_run_that_asks_for_its_language(make_cfg, tmp_path, monkeypatch) -> None:
    name, conf = _walkthrough_source(tmp_path, monkeypatch)
    (tmp_path / "en.txt").write_text("only English\n", encoding="utf-8")
    common = ("task=prepare", f"corpus={name}", f"hydra.searchpath=[file://{conf}]",
              f"corpus.source.dumps.eng={tmp_path / 'en.txt'}")  # corpus.source.dumps.esp stays ???
    manifest = prepare.run(make_cfg(*common, "corpus.languages=[eng]"))
    assert set(manifest["languages"]) == {"eng"}
    with pytest.raises(SystemExit, match=r"corpus.languages asks for \['esp'\] but no dump path is set"):
        prepare.run(make_cfg(*common))  # the YAML's languages: [eng, esp]


SOURCES = sorted(p.stem for p in (config_dir() / "corpus").glob("*.yaml")
                 if "source" in OmegaConf.load(p) and OmegaConf.load(p).source is not None)


def test_every_configured_corpus_has_a_source() -> None:
    assert {"stackexchange", "wikipedia", "conversational", "debian"} <= set(SOURCES)


@pytest.mark.parametrize("name", SOURCES)
def test_configured_sources_follow_the_protocol(name: str) -> None:
    cls = get_class(OmegaConf.load(config_dir() / "corpus" / f"{name}.yaml").source._target_)
    assert isinstance(cls.kind, str) and cls.kind
    assert list(inspect.signature(cls.build).parameters) == ["self", "out", "languages", "seed"]
