"""The embedded demo end to end with tiny budgets: real teacher, two students, report, speed;
deterministic (two runs from empty caches give identical metrics) and fully cached the third time."""

import json
import os
from pathlib import Path

import pytest
from omegaconf import open_dict

from domain_distil.stages.protocol import DOMAIN, GENERAL, TEACHER, TRIMMED
from domain_distil.tasks.demo import run as run_demo

TINY = [
    "experiment=demo",
    "demo.data.languages=[eng,esp]", "demo.data.corpus_mb_per_lang=0.012", "demo.data.general_mb_per_lang=0.012",
    "demo.data.n_train=80", "demo.data.n_val=40", "demo.data.n_test=60",
    "demo.seeds=[0,1,2]", "demo.langs=[eng]", "demo.tasks=[cc_intent]", "demo.classify.trainer.max_epochs=4",
    "demo.speed.lengths=[16]", "demo.speed.repeats=3", "demo.speed.warmup=1", "demo.speed.realistic.n_messages=3",
    "logger=none", "trainer.enable_progress_bar=false",
]


def _metrics(results_root: Path) -> dict[str, dict]:
    """Every job's test and validation scores, by its path below the results folder."""
    found = {}
    for path in sorted(results_root.rglob("results.json")):
        record = json.loads(path.read_text())
        key = "/".join(path.parent.parts[-4:])  # task/lang/encoder/seed
        found[key] = {"test": record["test"], "best_val": record["best_val"], "threshold": record.get("threshold")}
    return found


@pytest.mark.slow
def test_reduced_demo_is_deterministic_and_cached(make_cfg, monkeypatch, tmp_path):
    cfg = make_cfg(*TINY)
    summary = run_demo(cfg)
    assert summary["jobs"] == 3 * 3  # encoders x seeds
    report = Path(summary["report"])
    table = (report / "table8.md").read_text()
    for encoder in (TEACHER, GENERAL, DOMAIN):
        assert encoder in table
    assert " ± " in table  # mean ± sd in every cell
    runs = json.loads((report / "runs.json").read_text())
    assert runs["ok"] == 9 and not runs["failed"] and not runs["missing"]
    assert (report / "table8.csv").exists() and list(report.glob("*.png"))
    speed = speed_md = (Path(summary["speed"]) / "speed.md").read_text()
    assert TEACHER in speed and DOMAIN in speed
    rows = json.loads((Path(summary["speed"]) / "speed.json").read_text())["rows"]
    params = {row["model"]: row["params_m"] for row in rows}
    assert params[DOMAIN] < params[TEACHER]  # 6 layers instead of 12
    for student in summary["students"].values():
        manifest = json.loads((Path(student) / "manifest.json").read_text())
        assert manifest["steps"] > 0 and manifest["student_layers"] == [0, 2, 4, 7, 9, 11]
    first = _metrics(Path(cfg.paths.log_dir) / "demo")
    assert len(first) == 9

    # Determinism: a second run from empty caches (only the converted teacher, an input, is shared)
    # and into another results folder gives the same metrics, job for job. It also distils the
    # opt-in third student (demo.trimmed_student), which must leave the other jobs untouched.
    fresh = make_cfg(*TINY, "demo.trimmed_student=true")
    with open_dict(fresh):
        fresh.paths.cache_dir = str(tmp_path / "cache2")
        fresh.paths.log_dir = str(tmp_path / "logs2")
        fresh.paths.output_dir = str(tmp_path / "output2")
    Path(fresh.paths.cache_dir).mkdir()
    os.symlink(Path(cfg.paths.cache_dir) / "teachers", Path(fresh.paths.cache_dir) / "teachers")
    with_trimmed = run_demo(fresh)
    second = _metrics(Path(fresh.paths.log_dir) / "demo")
    assert {key: value for key, value in second.items() if TRIMMED not in key} == first
    assert len(second) == 12 and with_trimmed["distilled"] == 3
    # The trimmed student: the in-domain corpus and recipe, its vocabulary cut to the tokens of that
    # corpus and of the tasks' training texts (never a validation or test text).
    trimmed = Path(with_trimmed["students"][TRIMMED])
    vocab = json.loads((trimmed / "manifest.json").read_text())["vocab"]
    assert vocab["mode"] == "trim" and 0 < vocab["size"] < vocab["teacher_size"] / 10
    extra = Path(fresh.paths.cache_dir).glob("demo_data/*/vocab_extra/train_texts.jsonl")
    texts = {json.loads(line)["text"] for path in extra for line in path.read_text().splitlines()}
    tasks = Path(fresh.paths.cache_dir).glob("demo_data/*/tasks/cc_intent.jsonl")
    rows = [json.loads(line) for path in tasks for line in path.read_text().splitlines()]
    assert texts == {row["text"] for row in rows if row["split"] == "train"}
    assert TRIMMED in (Path(with_trimmed["report"]) / "table8.md").read_text()
    rows = json.loads((Path(with_trimmed["speed"]) / "speed.json").read_text())["rows"]
    trimmed_params = {row["model"]: row["params_m"] for row in rows}
    assert trimmed_params[TRIMMED] < 0.35 * trimmed_params[TEACHER]  # the 250k-row table was most of it

    # Third run on the first cache: nothing is distilled or trained again; every job is re-read.
    monkeypatch.setattr("domain_distil.stages.distil.load_teacher", lambda *a, **k: pytest.fail("distilled again"))
    monkeypatch.setattr("lightning.Trainer.fit", lambda *a, **k: pytest.fail("trained again"))
    # Table 5 is re-used from the cache on the same machine (docs/demo.md), not timed again.
    monkeypatch.setattr("domain_distil.stages.speed.measure", lambda *a, **k: pytest.fail("timed again"))
    again = run_demo(make_cfg(*TINY))
    assert again["students"] == summary["students"] and again["jobs"] == 9
    # Nothing was handed to a worker process either (the patches above only reach this process).
    assert again["distilled"] == 0 and again["trained"] == 0
    assert (Path(again["speed"]) / "speed.md").read_text() == speed_md
    assert summary["distilled"] == 2 and summary["trained"] == 9


def test_table5_is_timed_again_when_the_int8_settings_or_calibration_texts_change(make_cfg, monkeypatch, tmp_path):
    """The cached Table 5 is keyed by everything the timing depends on, the int8 row's settings included."""
    from types import SimpleNamespace

    import domain_distil.stages.speed as speed_stage
    from domain_distil.stages.protocol import size_and_latency

    timed = []

    def measure(request) -> None:
        timed.append(request)
        request.output_dir.mkdir(parents=True, exist_ok=True)
        for name in ("speed.md", "speed.json"):
            (request.output_dir / name).write_text(str(len(timed)))

    monkeypatch.setattr(speed_stage, "measure", measure)
    monkeypatch.setattr(speed_stage, "speed_request", lambda cfg: SimpleNamespace(output_dir=Path(cfg.paths.output_dir)))
    (tmp_path / "calibration.txt").write_text("my order is late\nwhere is my parcel\n")

    def table5(*overrides: str) -> str:
        cfg = make_cfg(*TINY, *overrides)
        out = Path(size_and_latency(cfg, {DOMAIN: tmp_path / "student"}, tmp_path / "speed", ["t", "s"]))
        return (out / "speed.md").read_text()

    assert table5() == "1" and table5() == "1"  # the same models, settings and machine: re-used
    assert table5("int8.method=blockwise") == "2"
    assert table5(f"int8.calibration.texts={tmp_path / 'calibration.txt'}") == "3"
    assert table5() == "1"
