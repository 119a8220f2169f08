"""task=report on synthetic results.json sets whose right answer is known by construction."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from domain_distil.analysis.render import log_wandb
from domain_distil.analysis.results import ResultsError, collect
from domain_distil.analysis.table8 import StatsSettings, build_table8
from domain_distil.tasks.report import run

SEEDS = range(10)
BASE = [0.700 + 0.002 * s for s in SEEDS]  # mean 0.709
TASK = "cc_intent"


def write_result(root: Path, encoder: str, lang: str, freeze: bool, seed: int, f1: float | None, status: str = "ok") -> Path:
    """One results.json exactly as docs/formats.md specifies it."""
    mode = "frozen" if freeze else "finetuned"
    path = root / f"encoder={encoder},freeze={freeze},lang={lang}" / f"seed={seed}" / mode / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    scores = None if f1 is None else {"f1": f1, "precision": min(1.0, f1 + 0.05), "recall": f1 - 0.05}
    obj = {
        "task": TASK,
        "lang": lang,
        "encoder": {"id": encoder, "name_or_path": f"/models/{encoder}", "hash": "abc123"},
        "freeze": freeze,
        "seed": seed,
        "test": scores,
        "best_val": None if scores is None else {**scores, "epoch": 3},
        "timings": {"fit_s": 1.0},
        "git": {"commit": "unknown"},
        "config": {},
        "status": status,
        "error": None if status == "ok" else "RuntimeError: CUDA out of memory",
    }
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def scores_for(encoder: str, lang: str, seed: int) -> float:
    """eng: the student clearly beats both baselines. esp: the student equals the distil baseline
    seed for seed and the teacher is clearly better than both."""
    if encoder == "student":
        return BASE[seed] + (0.05 if lang == "eng" else 0.0)
    if encoder == "teacher":
        return BASE[seed] + 0.01
    return BASE[seed]


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for encoder in ("student", "distil", "teacher"):
        for lang in ("eng", "esp"):
            for freeze in (True, False):
                for seed in SEEDS:
                    write_result(root, encoder, lang, freeze, seed, scores_for(encoder, lang, seed))
    return root


def report_cfg(make_cfg: Callable[..., DictConfig], sweep: Path, *extra: str) -> DictConfig:
    return make_cfg(
        "~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{sweep}]",
        "report.baselines.distilmbert=distil", "report.baselines.mbert=teacher",
        "report.stats.n_resamples=300", *extra,
    )


def test_better_encoder_is_marked_and_equal_one_is_not(make_cfg: Callable[..., DictConfig], sweep: Path) -> None:
    result = run(report_cfg(make_cfg, sweep))
    (table,) = result.tables
    assert table.encoders == ["student", "distil", "teacher"]  # candidate first, then baselines
    assert table.freeze == [True, False]
    for freeze in (True, False):
        eng = table.cell("f1", freeze, "student", "eng")
        assert eng.marks == "⋆†"
        assert eng.mean == pytest.approx(0.759)
        esp = table.cell("f1", freeze, "student", "esp")
        assert esp.marks == ""
        assert esp.comparisons["distilmbert"].ks_pvalue == pytest.approx(1.0)
        assert esp.comparisons["mbert"].ks_pvalue == pytest.approx(1.0)  # teacher is better, not worse
        # Baselines are never marked.
        assert table.cell("f1", freeze, "distil", "eng").marks == ""

    out = Path(make_cfg().paths.output_dir)
    markdown = (out / "table8.md").read_text(encoding="utf-8")
    assert "| F1-Score | Frozen | student | 75.9⋆† | 70.9 |" in markdown
    assert "| F1-Score | Frozen | teacher | 71.9 | 71.9 |" in markdown
    assert r"75.9$^{\star}$$^{\dagger}$" in (out / "table8.tex").read_text(encoding="utf-8")
    assert (out / "table8_cc_intent_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = list(csv.DictReader((out / "table8.csv").open(encoding="utf-8")))
    assert len(rows) == 3 * 2 * 3 * 2  # metrics x modes x encoders x langs
    row = next(r for r in rows if (r["metric"], r["weights"], r["encoder"], r["lang"]) == ("f1", "frozen", "student", "eng"))
    assert int(row["n"]) == 10 and float(row["mean"]) == pytest.approx(0.759)
    assert float(row["std"]) == pytest.approx(0.0060553, rel=1e-4)  # sd of 0, 2, ..., 18 thousandths
    assert float(row["vs_distilmbert_ks_pvalue"]) < 1e-4 and float(row["vs_mbert_ks_pvalue"]) < 1e-4
    assert float(row["vs_distilmbert_mwu_pvalue"]) < 1e-4
    assert float(row["vs_distilmbert_ci_low"]) < 0.05 < float(row["vs_distilmbert_ci_high"])
    assert float(row["vs_distilmbert_cliffs_delta"]) == 1.0


def test_swapping_the_roles_removes_the_mark(make_cfg: Callable[..., DictConfig], sweep: Path) -> None:
    # Now "distil" is the candidate and the student plays the DistilmBERT role: distil is worse.
    cfg = make_cfg(
        "~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{sweep}]", "report.baselines.distilmbert=student",
        "report.baselines.mbert=teacher", "report.stats.n_resamples=300", "report.formats=[md]",
    )
    (table,) = run(cfg).tables
    cell = table.cell("f1", True, "distil", "eng")
    assert cell.marks == ""
    assert cell.comparisons["distilmbert"].ks_pvalue == pytest.approx(1.0)
    assert cell.comparisons["distilmbert"].mean_diff == pytest.approx(-0.05)


def test_failed_and_missing_runs_are_reported(make_cfg: Callable[..., DictConfig], sweep: Path) -> None:
    failed = write_result(sweep, "teacher", "esp", True, 3, None, status="failed")
    (sweep / "encoder=student,freeze=True,lang=eng" / "seed=9" / "frozen" / "results.json").unlink()
    cfg = report_cfg(make_cfg, sweep, "report.formats=[md]", "report.expected.seeds=[0,1,2,3,4,5,6,7,8,9,10]")
    (table,) = run(cfg).tables
    runs = json.loads((Path(cfg.paths.output_dir) / "runs.json").read_text(encoding="utf-8"))
    assert runs["failed"] == [{
        "run": "task=cc_intent encoder=teacher lang=esp frozen seed=3",
        "path": str(failed.resolve()),
        "error": "RuntimeError: CUDA out of memory",
    }]
    # seed 9 of one cell was deleted; seed 10 was never launched anywhere (only the config knows).
    assert "task=cc_intent encoder=student lang=eng frozen seed=9" in runs["missing"]
    assert sum("seed=10" in m for m in runs["missing"]) == 3 * 2 * 2
    assert len(runs["missing"]) == 1 + 12
    # The affected cells use what is there and say how many seeds that was.
    assert table.cell("f1", True, "student", "eng").n == 9
    assert table.cell("f1", True, "teacher", "esp").n == 9
    markdown = (Path(cfg.paths.output_dir) / "table8.md").read_text(encoding="utf-8")
    assert "(n=9)" in markdown


def test_duplicates_keep_the_ok_run(tmp_path: Path, sweep: Path) -> None:
    other = tmp_path / "rerun"
    write_result(other, "student", "eng", True, 0, None, status="failed")
    collection = collect([sweep, other])
    assert len(collection.duplicates) == 1
    kept, ignored = collection.duplicates[0]
    assert kept.status == "ok" and ignored[0].status == "failed"
    assert not collection.failed and not collection.missing


def test_malformed_file_names_file_and_field(tmp_path: Path, sweep: Path) -> None:
    bad = write_result(sweep, "student", "eng", True, 0, 0.8)
    obj = json.loads(bad.read_text())
    obj["test"]["f1"] = 80.0  # percent instead of a fraction
    del obj["seed"]
    bad.write_text(json.dumps(obj))
    with pytest.raises(ResultsError) as info:
        collect([sweep])
    message = str(info.value)
    assert str(bad.resolve()) in message
    assert "test.f1: expected a number in [0, 1], got 80.0" in message
    assert "seed: required key is missing" in message
    with pytest.raises(ResultsError, match="does not exist"):
        collect([tmp_path / "nowhere"])


def test_unknown_baseline_lists_the_encoders_found(sweep: Path) -> None:
    with pytest.raises(ValueError, match=r"encoder ids found in the results: \['distil', 'student', 'teacher'\]"):
        build_table8(collect([sweep]), {"distilmbert": "distilmbert", "mbert": "teacher"})


def test_holm_adjusts_within_a_metric_and_too_few_seeds_warns(sweep: Path) -> None:
    collection = collect([sweep])
    plain = build_table8(collection, {"distilmbert": "distil", "mbert": "teacher"}, settings=StatsSettings(n_resamples=100))
    adjusted = build_table8(
        collection, {"distilmbert": "distil", "mbert": "teacher"}, settings=StatsSettings(n_resamples=100, holm=True)
    )
    raw = plain.tables[0].cell("f1", True, "student", "eng").adjusted["distilmbert"]
    # Family of F1 comparisons: 1 candidate x 2 roles x 2 langs x 2 modes = 8; the four equal
    # smallest p-values are multiplied by 8, 7, 6, 5 and made monotone -> 8 x raw for all four.
    assert adjusted.tables[0].cell("f1", True, "student", "eng").adjusted["distilmbert"] == pytest.approx(8 * raw)
    assert not plain.warnings

    few = collect([sweep], expected={"seeds": [0, 1, 2]})
    few.ok = [r for r in few.ok if r.key.seed < 3]
    result = build_table8(few, {"distilmbert": "distil", "mbert": "teacher"}, settings=StatsSettings(n_resamples=100))
    assert result.tables[0].cell("f1", True, "student", "eng").marks == ""
    assert any("3 vs 3 seeds" in w for w in result.warnings)


def test_wandb_tables(sweep: Path) -> None:
    import wandb

    logged: dict = {}

    class FakeRun:
        def log(self, data: dict) -> None:
            logged.update(data)

    result = build_table8(collect([sweep]), {"distilmbert": "distil", "mbert": "teacher"}, settings=StatsSettings(n_resamples=100))
    log_wandb(result, FakeRun())
    table = logged["table8/cc_intent"]
    assert isinstance(table, wandb.Table)
    assert table.columns == ["metric", "weights", "model", "eng", "esp"]
    assert ["f1", "Frozen", "student", "75.9⋆†", "70.9"] in table.data
    assert len(logged["table8/stats"].data) == 36


def test_table6_orders_students_by_budget_and_draws_figure2(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    root = tmp_path / "data_sweep"
    f1 = {"teacher": 0.692, "distilmbert": 0.679, "TD3.0": 0.727, "TD1.5": 0.627, "TD10": 0.7}
    for encoder, value in f1.items():
        for seed in range(3):
            write_result(root, encoder, "eng", True, seed, value + 0.001 * (seed - 1))
    cfg = make_cfg(
        "~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{root}]", "report.baselines.mbert=teacher",
        "report.stats.n_resamples=100", "report.formats=[md]", "report.table6.enabled=true",
        f"report.table6.task={TASK}", "report.table6.budgets={TD10: 0.9}",
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    lines = (out / "table6.md").read_text(encoding="utf-8").splitlines()
    models = [line.split(" | ")[0].lstrip("| ") for line in lines if line.startswith("| ") and "Model" not in line]
    assert models == ["teacher *", "distilmbert *", "TD10", "TD1.5", "TD3.0"]  # TD10 is 0.9 GB by config
    assert "| TD3.0 | 0.777 | 0.677 | 0.727 | 3 |" in lines
    rows = list(csv.DictReader((out / "table6.csv").open(encoding="utf-8")))
    assert float(rows[4]["f1_std"]) == pytest.approx(0.001)
    assert (out / "figure2.png").read_bytes()[:4] == b"\x89PNG"


def test_table6_needs_a_budget_for_every_student(tmp_path: Path) -> None:
    from domain_distil.analysis.table6 import build_table6

    for encoder in ("teacher", "student"):
        write_result(tmp_path, encoder, "eng", True, 0, 0.7)
    with pytest.raises(ValueError, match="cannot tell the data budget of encoder 'student'"):
        build_table6(collect([tmp_path]), TASK, "eng", True, ["teacher"])


def test_report_logs_to_wandb_when_the_logger_has_it(
    make_cfg: Callable[..., DictConfig], sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    calls: dict = {"logged": [], "finished": 0}

    class FakeRun:
        def log(self, data: dict) -> None:
            calls["logged"] += list(data)

    def fake_init(**kwargs: object) -> FakeRun:
        calls["init"] = kwargs
        return FakeRun()

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(wandb, "finish", lambda *a, **k: calls.__setitem__("finished", calls["finished"] + 1))
    cfg = make_cfg(
        "~experiment", "task=report", f"report.sweep_dirs=[{sweep}]", "report.baselines.distilmbert=distil",
        "report.baselines.mbert=teacher", "report.stats.n_resamples=100", "report.formats=[csv]",
    )
    run(cfg)  # the default logger config has a wandb entry (offline)
    assert calls["init"]["mode"] == "offline" and calls["init"]["job_type"] == "report"
    assert calls["logged"] == ["table8/cc_intent", "table8/stats"]
    assert calls["finished"] == 1
    calls["logged"].clear()
    run(make_cfg("~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{sweep}]", "report.baselines.distilmbert=distil",
                 "report.baselines.mbert=teacher", "report.stats.n_resamples=100", "report.formats=[csv]"))
    assert calls["logged"] == []  # no wandb logger, no W&B
