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
from domain_distil.common.errors import ConfigError
from domain_distil.stages.classify import DistributedClassificationError
from domain_distil.stages.distil import effective_run, student_key
from domain_distil.tasks import classify, distill
from domain_distil.tasks import list as list_task

WORDS = "my order refund delivery account password card payment help cancel change track".split()


def _corpus(folder: Path, words: list[str] = WORDS) -> Path:
    folder.mkdir(parents=True)
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(14 + i % 20)) for i in range(40)]
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

    # Another recipe has no student: the error names the cache's students, their corpus and what
    # differs, instead of distilling.
    other = make_cfg(*overrides, "distill.optimizer.lr=1e-3")
    with pytest.raises(StudentLookupError, match="No distilled student") as error:
        resolve_encoder(other)
    message = error.value.one_line()
    assert f"key={student.path.name}" in message and f"corpus={corpus.resolve()}" in message
    assert "differs in: recipe.distill.optimizer.lr: 0.0005 -> 0.001" in message
    assert "corpus=None" not in message


def test_two_runs_of_one_recipe_are_told_apart_by_their_effective_run(make_cfg, tiny_teacher_dir, tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    overrides = _distill_overrides(tiny_teacher_dir, corpus)
    # fp32 even on a CPU with bf16 units (precision is in the key, not in the lookup record).
    student = distill.ensure_student(make_cfg("task=distill", *overrides, "distill.trainer.precision=32-true"))
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


def test_a_student_is_named_by_its_key_alone(make_cfg, tiny_teacher_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DOMAIN_DISTIL_CACHE", raising=False)
    students = {}
    for name, words in (("chats", WORDS), ("general", WORDS[::-1])):  # an in-domain and a general corpus
        path = Path(distill.run(make_cfg("task=distill", *_distill_overrides(tiny_teacher_dir, _corpus(tmp_path / name, words)))))
        last_line = capsys.readouterr().out.splitlines()[-1]
        # task=distill ends with the exact command that classifies with the student it exported.
        assert last_line == f"python run.py task=classify encoder=distilled encoder.key={path.name}"
        students[name] = path
    assert students["chats"] != students["general"]

    for name, path in students.items():
        # No teacher, corpus or distill override: the key's first 6 characters name the student, and
        # its default id tells it apart from the other one (the default teacher, mBERT, is never read).
        ref = resolve_encoder(make_cfg("task=classify", "encoder=distilled", f"encoder.key={path.name[:6]}"))
        assert ref.name_or_path == str(path) and ref.id == f"distilled-{name}-{path.name[:6]}"
    named = resolve_encoder(make_cfg("task=classify", "encoder=distilled", f"encoder.key={students['chats'].name}",
                                     "encoder.id=mine"))
    assert named.id == "mine" and named.name_or_path == str(students["chats"])

    rows = [row for row in list_task.run(make_cfg("task=list")) if row.kind == "student"]
    assert {(row.facts["key"], row.facts["id"]) for row in rows} == {
        (path.name, f"distilled-{name}-{path.name[:6]}") for name, path in students.items()}
    assert f"key={students['general'].name}  id=distilled-general-" in capsys.readouterr().out


def test_a_key_prefix_that_names_no_student_or_several_lists_the_candidates(make_cfg, tiny_teacher_dir, tmp_path):
    student = distill.ensure_student(make_cfg("task=distill", *_distill_overrides(tiny_teacher_dir, _corpus(tmp_path / "c"))))
    twin = student.path.with_name(student.path.name[:3] + "z" * 13)  # shares the first 3 characters
    shutil.copytree(student.path, twin)

    with pytest.raises(StudentLookupError) as error:
        resolve_encoder(make_cfg("task=classify", "encoder=distilled", f"encoder.key={student.path.name[:3]}"))
    message = error.value.one_line()
    assert message.startswith(f"encoder.key='{student.path.name[:3]}' matches 2 students; give more characters")
    assert f"key={student.path.name}" in message and f"key={twin.name}" in message

    with pytest.raises(StudentLookupError, match="encoder.key='nosuchkey' matches no student in") as error:
        resolve_encoder(make_cfg("task=classify", "encoder=distilled", "encoder.key=nosuchkey"))
    assert f"key={student.path.name}" in str(error.value) and f"key={twin.name}" in str(error.value)
    # Hydra reads a prefix such as 1e5 as the number 100000.0: say so instead of matching "100000.0".
    with pytest.raises(ConfigError, match=r"encoder.key=100000.0 was read as a number, not a student key; quote it"):
        resolve_encoder(make_cfg("task=classify", "encoder=distilled", "encoder.key=1e5"))


def test_the_printed_command_names_the_cache_only_when_the_next_command_would_look_elsewhere(
        make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("DOMAIN_DISTIL_CACHE", raising=False)
    cfg = make_cfg("task=distill")  # cache_dir = <root_dir>/cache, the default
    assert distill.cache_overrides(cfg) == ()
    cfg.paths.cache_dir = str(tmp_path / "elsewhere")
    assert distill.cache_overrides(cfg) == (f"paths.cache_dir={tmp_path / 'elsewhere'}",)
    monkeypatch.setenv("DOMAIN_DISTIL_CACHE", str(tmp_path / "elsewhere"))  # the same shell finds it again
    assert distill.cache_overrides(cfg) == ()
