"""Continued distillation: ``student.init=student student.from=<key, prefix or folder>`` starts from an
exported student (say, the general one) and distils it on a new corpus.

Every test shares one cache: the parent is distilled once (general text), the continued student once
(in-domain text); later tests hit the cache.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from datamodules.samplers import LengthGroupedBatchSampler
from domain_distil.artifacts.students import StudentArtifact, StudentLookupError, lineage
from domain_distil.classification.encoders import find_distilled_student
from domain_distil.common.cpu import distill_precision
from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import memoised_model_hash
from domain_distil.corpus.dataset import TokenSequenceDataset
from domain_distil.modeling.teachers import load_teacher
from domain_distil.stages import distil as stage
from domain_distil.tasks.distill import ensure_student, run_settings
from tests.test_resume import TOLERANCE, _CrashAt

GENERAL = "the city history king war music science river quick brown fox jumps over lazy dog cat sat mat".split()
DOMAIN = "my order refund delivery account password card payment help cancel change track package".split()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("continued")
    for name, words in (("general", GENERAL), ("domain", DOMAIN)):
        (root / name).mkdir()
        for lang in ("eng", "esp"):
            lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(14 + i % 20)) for i in range(60)]
            (root / name / f"{lang}.txt").write_text("\n".join(lines) + "\n")
    return root


def _cfg(make_cfg, teacher: Path, corpus: Path, cache: Path, *extra: str):
    cfg = make_cfg(
        "task=distill", f"teacher.name_or_path={teacher}", f"corpus.dir={corpus}", "student.num_layers=2",
        "logger=none", "distill.batch_size=8", "distill.trainer.accumulate_grad_batches=2",
        "distill.trainer.max_epochs=2", "distill.checkpoint_every_n_steps=2", "trainer.deterministic=true",
        "trainer.enable_progress_bar=false", *extra,
    )
    cfg.paths.cache_dir = str(cache)  # one cache for the whole module: the parent is distilled once
    return cfg


def _parent(make_cfg, teacher: Path, workspace: Path) -> StudentArtifact:
    return ensure_student(_cfg(make_cfg, teacher, workspace / "general", workspace / "cache"))


def _continued_cfg(make_cfg, teacher: Path, workspace: Path, source: str, cache: Path | None = None, *extra: str):
    return _cfg(make_cfg, teacher, workspace / "domain", cache or workspace / "cache", "student.init=student",
                f"student.from={source}", *extra)


def _weights(student: StudentArtifact) -> dict[str, torch.Tensor]:
    return load_file(str(student.path / "model.safetensors"))


def test_the_continued_student_records_its_lineage_and_its_key_covers_the_parent(
    make_cfg, tiny_teacher_dir, workspace
):
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)
    child = ensure_student(_continued_cfg(make_cfg, tiny_teacher_dir, workspace, parent.key[:7]))  # a key prefix
    scratch = ensure_student(_cfg(make_cfg, tiny_teacher_dir, workspace / "domain", workspace / "cache"))
    content = memoised_model_hash(parent.path, workspace / "cache")
    assert parent.manifest["lineage"] == []  # cut from the teacher
    assert [(e["key"], e["content"], e["corpus"]) for e in child.manifest["lineage"]] == [(parent.key, content, "general")]
    assert child.manifest["identity"]["parent"] == {"key": parent.key, "content": content}
    # The recipe names the parent by its full key, however student.from spelled it.
    assert {k: child.manifest["lookup"]["recipe"]["student"][k] for k in ("init", "from")} == {
        "init": "student", "from": parent.key}
    assert "init" not in parent.manifest["lookup"]["recipe"]["student"]  # teacher-initialised keys never moved
    assert len({parent.key, child.key, scratch.key}) == 3
    assert [e["key"] for e in lineage(child, workspace / "cache")] == [child.key, parent.key]
    # A grandchild (the child continued once more, on general text): its parent first, then the parent's own.
    grandchild = ensure_student(_cfg(make_cfg, tiny_teacher_dir, workspace / "general", workspace / "cache",
                                     "student.init=student", f"student.from={child.key}"))
    assert [e["key"] for e in grandchild.manifest["lineage"]] == [child.key, parent.key]
    assert [e["corpus"] for e in grandchild.manifest["lineage"]] == ["domain", "general"]
    assert [e["key"] for e in lineage(grandchild, workspace / "cache")] == [grandchild.key, child.key, parent.key]


def test_the_manifest_records_the_padding_share_and_the_precision(make_cfg, tiny_teacher_dir, workspace):
    """The padding share is 1 - tokens / positions over every batch of both epochs, as the sampler cut them."""
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)
    lengths = TokenSequenceDataset(workspace / "cache" / "corpus" / parent.manifest["corpus_hash"]).lengths
    sampler = LengthGroupedBatchSampler(lengths, 8, seed=56, max_length=128)
    positions = 0
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        positions += sum(int(lengths[batch].max()) * len(batch) for batch in sampler.batches())
    assert parent.manifest["padding_share"] == pytest.approx(1 - 2 * int(lengths.sum()) / positions)
    assert parent.manifest["effective"]["precision"] == distill_precision("cpu", "32-true")  # bf16 where it can


def test_it_starts_from_the_parents_weights(make_cfg, tiny_teacher_dir, workspace):
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)
    plan = stage.plan_from_config(_continued_cfg(make_cfg, tiny_teacher_dir, workspace, str(parent.path)))  # a folder
    assert plan.parent is not None and plan.parent.key == parent.key
    corpus = workspace / "cache" / "corpus" / ensure_student(
        _continued_cfg(make_cfg, tiny_teacher_dir, workspace, parent.key)).manifest["corpus_hash"]
    module, _ = stage._build_module(plan, load_teacher(plan.teacher_cfg, workspace / "cache"), corpus)
    start, saved = module.student.state_dict(), _weights(parent)
    assert set(saved) <= set(start)
    assert all(torch.equal(start[name], tensor) for name, tensor in saved.items())
    assert module.student.config.distil_layers == parent.manifest["student_layers"]
    assert not module.student.base_model.embeddings.position_embeddings.weight.requires_grad  # the spec's freezes


def test_encoder_distilled_finds_it_whichever_way_the_parent_is_named(make_cfg, tiny_teacher_dir, workspace):
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)
    child = ensure_student(_continued_cfg(make_cfg, tiny_teacher_dir, workspace, parent.key))
    for source in (parent.key[:7], str(parent.path)):
        assert find_distilled_student(_continued_cfg(make_cfg, tiny_teacher_dir, workspace, source)).key == child.key


def _copy_parent(parent: StudentArtifact, folder: Path, edit) -> Path:
    shutil.copytree(parent.path, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(folder, manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_incompatible_starts_are_refused_in_one_line_before_any_work(make_cfg, tiny_teacher_dir, workspace, tmp_path):
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)

    def refused(error: type[Exception], message: str, *overrides: str) -> None:
        cfg = _cfg(make_cfg, tiny_teacher_dir, workspace / "domain", workspace / "cache", *overrides)
        with pytest.raises(error, match=message):
            stage.plan_from_config(cfg)

    refused(ConfigError, r"student.init=student needs student.from=", "student.init=student")
    refused(ConfigError, r"student.from=abc is read only with student.init=student", "student.from=abc")
    refused(ConfigError, r"student.init must be one of teacher, student, got 'parent'", "student.init=parent")
    refused(StudentLookupError, r"student.from='zzzz' matches no student", "student.init=student", "student.from=zzzz")
    refused(ConfigError, r"has 2 layers .* student.num_layers=3", "student.init=student",
            f"student.from={parent.key}", "student.num_layers=3")
    refused(ConfigError, r"student.init=student and student.name_or_path both name the starting weights",
            "student.init=student", f"student.from={parent.key}", f"student.name_or_path={parent.path}")
    # Same layer count, other teacher layers: the layer-wise terms would pair the wrong layers.
    copied = list(parent.manifest["student_layers"])
    other = [0, 1] if copied != [0, 1] else [0, 2]
    refused(ConfigError, re.escape(f"(copied from teacher layers {copied})") + rf".*student.layers={re.escape(str(other))}",
            "student.init=student",
            f"student.from={parent.key}", f"student.layers=[{other[0]},{other[1]}]")

    def trimmed(folder: Path, manifest: dict) -> None:
        manifest["vocab"] = {"mode": "trim", "size": 100, "teacher_size": 463}

    def wider(folder: Path, manifest: dict) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "dim": 64}))

    def more_ids(folder: Path, manifest: dict) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 1}))

    def longer(folder: Path, manifest: dict) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 1024}))

    def other_tokens(folder: Path, manifest: dict) -> None:  # another teacher of the same shape
        manifest["lookup"]["teacher_identity"] = {"path_hash": "another teacher"}
        tokenizer = json.loads((folder / "tokenizer.json").read_text())
        vocab = tokenizer["model"]["vocab"]  # WordPiece: token -> id; two tokens swap their ids
        vocab["order"], vocab["refund"] = vocab["refund"], vocab["order"]
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer))

    for edit, message in ((trimmed, r"has a trimmed vocabulary \(100 of 463 ids\)"),
                          (wider, r"does not fit the teacher: hidden size 64 != teacher's 32"),
                          (more_ids, r"does not fit the teacher: vocab_size 464 != teacher's 463"),
                          (longer, r"does not fit the teacher: max_position_embeddings 1024 != teacher's"),
                          (other_tokens, r"its tokenizer differs from the teacher's \(463 vs 463 tokens, 4 token-id")):
        folder = _copy_parent(parent, tmp_path / edit.__name__, edit)
        refused(ConfigError, message, "student.init=student", f"student.from={folder}")


@pytest.mark.slow
def test_an_interrupted_continued_run_resumes_exactly(make_cfg, tiny_teacher_dir, workspace, tmp_path):
    """Killed after step 5 (last.ckpt at step 4), resumed with ckpt_path=last in another cache that reaches
    the parent by its folder: the same key and, to 1e-6, the same weights as the uninterrupted run."""
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)
    uninterrupted = ensure_student(_continued_cfg(make_cfg, tiny_teacher_dir, workspace, parent.key))
    cfg = _continued_cfg(make_cfg, tiny_teacher_dir, workspace, str(parent.path), tmp_path / "cache")
    plan = stage.plan_from_config(cfg)
    with pytest.raises(RuntimeError, match="simulated crash"):
        stage.distil(plan, dataclasses.replace(run_settings(cfg, plan), callbacks=[_CrashAt(5)]))
    resumed = stage.distil(stage.plan_from_config(cfg), dataclasses.replace(run_settings(cfg, plan), ckpt_path="last"))
    assert resumed.key == uninterrupted.key and resumed.manifest["steps"] == uninterrupted.manifest["steps"] == 16
    expected, got = _weights(uninterrupted), _weights(resumed)
    assert max(float((got[k] - expected[k]).abs().max()) for k in expected) <= TOLERANCE


def test_a_compiled_loss_enters_the_key_only_when_it_runs(make_cfg, tiny_teacher_dir, workspace):
    """distill.compile=auto leaves the tiny teacher (463 ids) eager: the default key is unchanged."""
    parent = _parent(make_cfg, tiny_teacher_dir, workspace)
    prepared = {}
    for setting in ("auto", "false", "true"):
        cfg = _cfg(make_cfg, tiny_teacher_dir, workspace / "general", workspace / "cache", f"distill.compile={setting}")
        plan = stage.plan_from_config(cfg)
        prepared[setting] = stage._prepare(plan, run_settings(cfg, plan), [], [])
    assert prepared["auto"].export_dir.name == prepared["false"].export_dir.name == parent.key
    assert prepared["true"].effective["compiled"] is True and prepared["true"].export_dir.name != parent.key
    assert "compiled" not in prepared["auto"].effective
