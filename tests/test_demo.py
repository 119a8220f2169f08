"""The embedded demo end to end with tiny budgets: real teacher, two students, report, speed."""

import json
from pathlib import Path

import pytest

from domain_distil.tasks.demo import DOMAIN, GENERAL, TEACHER
from domain_distil.tasks.demo import run as run_demo

TINY = [
    "demo.data.languages=[eng,esp]", "demo.data.corpus_mb_per_lang=0.012", "demo.data.general_mb_per_lang=0.012",
    "demo.data.n_train=80", "demo.data.n_val=40", "demo.data.n_test=60",
    "demo.seeds=[0,1,2,3]", "demo.langs=[eng]", "demo.tasks=[cc_intent]",
    "demo.speed.lengths=[16]", "demo.speed.repeats=3", "demo.speed.warmup=1", "demo.speed.realistic.n_messages=3",
    "logger=none", "trainer.enable_progress_bar=false",
]


@pytest.mark.slow
def test_reduced_demo_end_to_end_then_from_the_cache(make_cfg, monkeypatch):
    cfg = make_cfg(*TINY)
    summary = run_demo(cfg)
    assert summary["jobs"] == 3 * 4  # encoders x seeds
    report = Path(summary["report"])
    table = (report / "table8.md").read_text()
    for encoder in (TEACHER, GENERAL, DOMAIN):
        assert encoder in table
    runs = json.loads((report / "runs.json").read_text())
    assert runs["ok"] == 12 and not runs["failed"] and not runs["missing"]
    assert (report / "table8.csv").exists() and list(report.glob("*.png"))
    speed = (Path(summary["speed"]) / "speed.md").read_text()
    assert TEACHER in speed and DOMAIN in speed
    rows = json.loads((Path(summary["speed"]) / "speed.json").read_text())["rows"]
    params = {row["model"]: row["params_m"] for row in rows}
    assert params[DOMAIN] < params[TEACHER]  # 6 layers instead of 12
    for student in summary["students"].values():
        manifest = json.loads((Path(student) / "manifest.json").read_text())
        assert manifest["steps"] > 0 and manifest["student_layers"] == [0, 2, 4, 7, 9, 11]

    # Second run: nothing is distilled or trained again; every classification job is re-read.
    monkeypatch.setattr("domain_distil.stages.distil.load_teacher", lambda *a, **k: pytest.fail("distilled again"))
    monkeypatch.setattr("lightning.Trainer.fit", lambda *a, **k: pytest.fail("trained again"))
    again = run_demo(make_cfg(*TINY))
    assert again["students"] == summary["students"] and again["jobs"] == 12
