"""The data sweep under a multi-device trainer: the loop runs once, in one process; each
distillation is its own distributed launch; classification is single-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import open_dict
from tiny_tasks import intent_rows, write_jsonl

from domain_distil.common.errors import UserInputError
from domain_distil.tasks import data_sweep, distill

WORDS = "my order refund delivery account password card payment help cancel change track".split()


@pytest.fixture()
def sweep_overrides(tiny_teacher_dir, tmp_path) -> list[str]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(14 + i % 9)) for i in range(300)]
    (corpus / "eng.txt").write_text("\n".join(lines) + "\n")
    write_jsonl(tmp_path / "tasks" / "cc.jsonl", intent_rows(langs=("eng",)))
    return [
        "experiment=data_sweep", f"teacher.name_or_path={tiny_teacher_dir}", "corpus=text", f"corpus.dir={corpus}",
        "cls_task=cc_intent", f"cls_task.dir={tmp_path / 'tasks'}", "cls_task.files=null", "cls_task.languages=[eng]",
        "data_sweep.budgets_gb=[1e-5]", "data_sweep.seeds=[0]", "data_sweep.baselines=[teacher]",
        "student.num_layers=2", "distill.batch_size=8", "distill.trainer.max_epochs=1", "logger=none",
        "classify.trainer.max_epochs=1", "head.attention_dim=8", "head.num_hops=2", "head.hidden_dim=4",
        "trainer.enable_progress_bar=false",
    ]


def test_ddp_sweep_launches_each_distillation_once_and_classifies_single_process(make_cfg, sweep_overrides):
    cfg = make_cfg(*sweep_overrides, "trainer.devices=2", "+trainer.strategy=ddp")
    launches: list[list[str]] = []

    def fake_launch(overrides):  # what the child process does, run here on one device
        launches.append(list(overrides))
        child = make_cfg(*sweep_overrides, *overrides)
        assert child.task == "distill"
        distill.ensure_student(child)

    summary = data_sweep.run(cfg, launch=fake_launch)
    assert len(launches) == 1  # one budget, one distributed launch, from this one process
    subset = next(o for o in launches[0] if o.startswith("corpus.dir=")).split("=", 1)[1]
    assert "corpus_subsets" in subset and summary["students"]["TD0.0"]
    results = sorted(Path(cfg.paths.output_dir).rglob("results.json"))
    assert [r.parent.parent.name for r in results] == ["TD0.0", "teacher"]
    for path in results:
        record = json.loads(path.read_text())
        assert record["status"] == "ok" and record["config"]["trainer"]["devices"] == 1
        assert "strategy" not in record["config"]["trainer"]


def test_single_device_sweep_distils_in_process(make_cfg, sweep_overrides):
    cfg = make_cfg(*sweep_overrides)
    summary = data_sweep.run(cfg, launch=lambda overrides: pytest.fail("no child launch on one device"))
    assert Path(summary["students"]["TD0.0"], "manifest.json").is_file()


def test_sweep_refuses_to_run_on_every_rank(make_cfg, sweep_overrides, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserInputError, match="not under torchrun"):
        data_sweep.run(make_cfg(*sweep_overrides))


def test_is_distributed_reads_devices_and_nodes(make_cfg):
    cfg = make_cfg()
    with open_dict(cfg):
        for devices, nodes, expected in [(1, 1, False), (2, 1, True), (-1, 1, True), ("auto", 1, True),
                                         ([0], 1, False), ([0, 1], 1, True), (1, 2, True), ("0,1", 1, True)]:
            cfg.trainer.devices, cfg.trainer.num_nodes = devices, nodes
            assert data_sweep.is_distributed(cfg.trainer) is expected, (devices, nodes)
