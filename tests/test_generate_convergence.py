"""docs/generate_convergence.py: the table and verdicts it writes into docs/convergence.md come from
the jobs' results.json files and the students' manifests, with the KS test of analysis/stats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scripts import load_script


@pytest.fixture(scope="module")
def generator():
    yield load_script("docs/generate_convergence.py")
    del sys.modules["generate_convergence"]


def _results(work: Path, encoder_id: str, test_f1: list[float], val_f1: list[float] | None = None) -> None:
    for seed, f1 in enumerate(test_f1):
        path = work / "classify" / encoder_id / "h0" / f"seed{seed}" / "results.json"
        path.parent.mkdir(parents=True)
        val = (val_f1 or test_f1)[seed]
        path.write_text(json.dumps({"seed": seed, "test": {"f1": f1}, "best_val": {"f1": val}}), encoding="utf-8")


def _student(generator, work: Path, recipe: str, budget: int | None, seconds: float):
    student = generator.Student(f"{recipe}-{budget}" if budget else recipe, recipe, budget, [])
    student.manifest = {"key": recipe, "corpus_tokens": budget or 5000, "wall_seconds": seconds, "tokens_per_sec": 1000.0}
    return student


def test_the_table_holds_each_students_scores_gap_and_ks_verdicts(generator, tmp_path):
    teacher = [0.50 + 0.001 * s for s in range(10)]
    _results(tmp_path, "teacher", teacher)
    _results(tmp_path, "general", [0.46 + 0.001 * s for s in range(10)])
    _results(tmp_path, "hidden-1000", [0.44 + 0.001 * s for s in range(10)])  # every seed below the teacher
    _results(tmp_path, "layerwise-1000", teacher)  # the teacher's own scores: not below it
    general = _student(generator, tmp_path, "general", None, 300.0)
    students = [_student(generator, tmp_path, "hidden", 1000, 10.0), _student(generator, tmp_path, "layerwise", 1000, 12.0)]
    section = generator.render(tmp_path, students, general, "layerwise", {"layerwise": 52.7, "minilm": 47.4}, students)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| ")}
    hidden, layerwise = rows["hidden-1000"].split(" | "), rows["layerwise-1000"].split(" | ")
    assert hidden[5] == "44.5 ± 0.3" and hidden[6] == "-6.0"  # mean ± sd ×100, gap to the teacher (50.45)
    assert float(hidden[7]) < 1e-4  # teacher > student: the two samples do not overlap
    assert float(hidden[9].rstrip(" |")) < 1e-4 and float(hidden[8]) == 1.0  # general > student, not <
    assert float(layerwise[7]) == 1.0 and layerwise[6] == "+0.0"
    assert float(layerwise[10].rstrip(" |")) < 1e-4 and hidden[10].strip(" |") == ""  # against hidden at its budget
    assert "layerwise 52.7, minilm 47.4" in section and "`layerwise` went on" in section
    assert "(0.1 core-hours of distillation in all" in section  # 300 + 10 + 12 s
    assert section.startswith(generator.BEGIN) and section.rstrip().endswith(generator.END)


def test_missing_seeds_are_named(generator, tmp_path):
    _results(tmp_path, "hidden-1000", [0.4] * 9)
    with pytest.raises(SystemExit, match=r"hidden-1000: no results for seeds \[9\]"):
        generator.scores(tmp_path, "hidden-1000")


def test_a_failed_job_is_named_with_its_error(generator, tmp_path):
    _results(tmp_path, "hidden-1000", [0.4] * 10)
    failed = tmp_path / "classify" / "hidden-1000" / "h0" / "seed3" / "results.json"
    failed.write_text(json.dumps({"seed": 3, "status": "failed", "error": "CUDA out of memory"}), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"seed3/results.json: this classify job failed \(CUDA out of memory\)"):
        generator.scores(tmp_path, "hidden-1000")


def test_budget_names(generator):
    assert [generator.budget_name(n) for n in (150_000, 500_000, 1_500_000, 10_000_000)] == ["150k", "500k", "1.5M", "10M"]


def test_every_run_gets_the_shared_data_folder_and_its_own_output_folder(generator, tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(generator, "run_cli", lambda overrides, env, log: commands.append(list(overrides)))
    session = generator.Session(tmp_path, {}, ("paths.data_dir=/data",))
    student = generator.in_domain("layerwise", 500_000, Path("/data/prepared/debian/corpus"))
    student.folder = tmp_path / "students" / "k"
    generator.classify_student(student, session)
    assert commands[0][:2] == ["-m", "task=classify"] and "paths.data_dir=/data" in commands[0]
    assert commands[0][-3:] == [f"encoder.name_or_path={student.folder}", "encoder.id=layerwise-500k",
                                f"hydra.sweep.dir={tmp_path / 'classify' / 'layerwise-500k'}"]
    assert "distill=layerwise" in student.overrides and "corpus.budget_tokens=500000" in student.overrides
    with pytest.raises(SystemExit, match="unknown recipe 'tiny'"):
        generator.in_domain("tiny", 1, Path("/data"))
