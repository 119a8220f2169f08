"""Stages hand each other artifacts: a student is found through manifests, never by re-planning the
distillation or reading its corpus; its identity includes what the hardware made of the recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import pytest
from tiny_tasks import classify_overrides, intent_rows, write_jsonl

from domain_distil.artifacts.students import StudentLookupError, iter_students
from domain_distil.classification.encoders import resolve_encoder
from domain_distil.stages.classify import DistributedClassificationError
from domain_distil.stages.distil import effective_run, student_key
from domain_distil.tasks import classify, distill
from domain_distil.tasks import list as list_task

WORDS = "my order refund delivery account password card payment help cancel change track".split()


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(14 + i % 20)) for i in range(40)]
    (folder / "eng.txt").write_text("\n".join(lines) + "\n")
    return folder


def _distill_overrides(teacher: Path, corpus: Path, *extra: str) -> list[str]:
    return [f"teacher.name_or_path={teacher}", f"corpus.dir={corpus}", "student.num_layers=2", "logger=none",
            "distill.batch_size=8", "distill.trainer.max_epochs=1", "trainer.enable_progress_bar=false", *extra]


def test_classification_finds_the_student_after_its_corpus_is_gone(make_cfg, tiny_teacher_dir, tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    student = distill.ensure_student(make_cfg("task=distill", *_distill_overrides(tiny_teacher_dir, corpus)))
    shutil.rmtree(corpus)  # a classification job must not need (or read) the corpus
    (tmp_path / "cache" / "corpus").rename(tmp_path / "cache" / "corpus-moved")  # nor its shards

    task_dir = tmp_path / "tasks"
    write_jsonl(task_dir / "cc.jsonl", intent_rows(langs=("eng", "esp")))
    overrides = [*classify_overrides(Path("unused"), task_dir, "classify.trainer.max_epochs=1", "logger=none"),
                 "encoder=distilled", *_distill_overrides(tiny_teacher_dir, corpus)]
    overrides = [o for o in overrides if not o.startswith("encoder.name_or_path")]
    cfg = make_cfg(*overrides)
    ref = resolve_encoder(cfg)
    assert ref.name_or_path == str(student.path)
    record = classify.run(cfg)
    assert record["status"] == "ok" and record["encoder"]["name_or_path"] == str(student.path)

    # Another recipe has no student: the error names the teacher's students instead of distilling.
    other = make_cfg(*overrides, "distill.optimizer.lr=1e-3")
    with pytest.raises(StudentLookupError, match="No distilled student") as error:
        resolve_encoder(other)
    assert student.path.name in str(error.value)


def test_two_runs_of_one_recipe_are_told_apart_by_their_effective_run(make_cfg, tiny_teacher_dir, tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    overrides = _distill_overrides(tiny_teacher_dir, corpus)
    student = distill.ensure_student(make_cfg("task=distill", *overrides))
    # The same recipe run on 8 bf16 GPUs: a second student of the same lookup record.
    twin = student.path.with_name("f" * 16)
    shutil.copytree(student.path, twin)
    manifest = json.loads((twin / "manifest.json").read_text())
    manifest["effective"] = {**manifest["effective"], "precision": "bf16-mixed", "world_size": 8}
    (twin / "manifest.json").write_text(json.dumps(manifest))
    assert len(iter_students(tmp_path / "cache")) == 2

    cfg = make_cfg("task=classify", "encoder=distilled", *overrides)
    with pytest.raises(StudentLookupError, match="2 students match") as error:
        resolve_encoder(cfg)
    assert str(student.path) in str(error.value) and str(twin) in str(error.value)
    picked = resolve_encoder(make_cfg("task=classify", "encoder=distilled", *overrides,
                                      "encoder.match={precision: bf16-mixed}"))
    assert picked.name_or_path == str(twin)

    rows = list_task.run(make_cfg("task=list"))
    students = [row for row in rows if row.kind == "student"]
    assert {row.path for row in students} == {student.path, twin}
    assert {row.facts["precision"] for row in students} == {"32-true", "bf16-mixed"}


def test_student_identity_includes_precision_world_size_and_global_batch():
    def key(**trainer_kwargs) -> str:
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **trainer_kwargs)
        return student_key({"recipe": "r", "effective": effective_run(trainer, per_device_batch=5)})

    base = key(devices=1)
    assert key(devices=1) == base
    assert key(devices=1, precision="bf16-mixed") != base
    assert key(devices=1, accumulate_grad_batches=2) != base
    assert key(devices=2, strategy="ddp") != base
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", accumulate_grad_batches=3, logger=False)
    assert effective_run(trainer, 5) == {"precision": "32-true", "world_size": 2, "per_device_batch": 5,
                                         "accumulate_grad_batches": 3, "global_batch": 30}


def test_classify_refuses_a_world_size_above_one(make_cfg, tiny_teacher_dir, tmp_path):
    task_dir = tmp_path / "tasks"
    write_jsonl(task_dir / "cc.jsonl", intent_rows(langs=("eng", "esp")))
    cfg = make_cfg(*classify_overrides(tiny_teacher_dir, task_dir), "trainer.devices=2", "+trainer.strategy=ddp")
    with pytest.raises(DistributedClassificationError, match="world size 2.*fan out"):
        classify.run(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert record["status"] == "failed" and "world size 2" in record["error"]
