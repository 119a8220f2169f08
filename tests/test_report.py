"""task=report on synthetic results.json sets whose right answer is known by construction."""

from __future__ import annotations

import csv
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from tiny_tasks import write_result

from domain_distil.analysis.render import log_wandb, plot_f1, render_latex, render_markdown
from domain_distil.analysis.results import ResultsError, collect, find_results
from domain_distil.analysis.table8 import METRIC_NAMES, StatsSettings, build_table8
from domain_distil.common.errors import ConfigError
from domain_distil.tasks.report import run

SEEDS = range(10)
BASE = [0.700 + 0.002 * s for s in SEEDS]  # mean 0.709
TASK = "cc_intent"


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
    # mean ± sd (sd of 0, 2, ..., 18 thousandths = 0.6 points) with the marks after it
    assert "| F1-Score | Frozen | student | 75.9 ± 0.6⋆† | 70.9 ± 0.6 |" in markdown
    assert "| F1-Score | Frozen | teacher | 71.9 ± 0.6 | 71.9 ± 0.6 |" in markdown
    assert "one-sided two-sample KS test" in markdown and "α = 0.05" in markdown
    # The p-value table: every ordered pair, both ways, one-sided KS p / MWU p.
    assert "| F1-Score | Frozen | student > teacher | 5.4e-06 / 5.4e-06 | 1 / 1 |" in markdown
    assert "| F1-Score | Frozen | teacher > student | 1 / 1 | 0.084 / 0.0025 |" in markdown
    assert r"75.9 $\pm$ 0.6$^{\star}$$^{\dagger}$" in (out / "table8.tex").read_text(encoding="utf-8")
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
    assert row["vs_distilmbert_significant"] == "better" and row["sd_x100"] == "0.6"
    pairs = list(csv.DictReader((out / "table8_pvalues.csv").open(encoding="utf-8")))
    assert len(pairs) == 3 * 2 * 6 * 2  # metrics x modes x ordered pairs of 3 encoders x langs


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
    with pytest.raises(ConfigError, match=r"encoder ids found in the results: \['distil', 'student', 'teacher'\]"):
        build_table8(collect([sweep]), {"distilmbert": "distilmbert", "mbert": "teacher"})


def test_a_dropped_baseline_role_leaves_one_role(make_cfg: Callable[..., DictConfig], sweep: Path) -> None:
    # Own sweeps without a DistilmBERT run: drop that role instead of inventing a baseline.
    cfg = make_cfg("~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{sweep}]",
                   "report.baselines.mbert=teacher", "~report.baselines.distilmbert", "report.stats.n_resamples=300",
                   "report.formats=[md]")
    (table,) = run(cfg).tables
    assert table.encoders == ["distil", "student", "teacher"]  # candidates in id order, then the baseline
    assert table.cell("f1", True, "student", "eng").marks == "†"
    assert table.cell("f1", True, "distil", "eng").marks == ""  # a candidate now, no better than the teacher


def test_readme_own_sweeps_row_runs_as_written(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| Table 8 with significance |"))
    command = re.search(r"`python run.py (.*?)`", row).group(1)
    for encoder in ("distilled-chats-3fa2c1", "distilmbert", "teacher"):
        for seed in range(3):
            write_result(tmp_path / "sweep", encoder, "eng", True, seed, 0.7 + 0.01 * seed)
    args = [arg.replace("outputs/classify/multiruns/...", str(tmp_path / "sweep")) for arg in shlex.split(command)]
    (table,) = run(make_cfg(*args, "logger=none", "report.formats=[md]", "report.stats.n_resamples=300")).tables
    assert table.encoders == ["distilled-chats-3fa2c1", "distilmbert", "teacher"]


TWO_STUDENTS = {"in_domain": ("1111aaaa2222bbbb", 0.80), "general": ("3333cccc4444dddd", 0.70)}


def two_students_named_alike(root: Path, encoder_id: str) -> Path:
    """Two students' sweeps whose results carry one encoder id but their own encoder hashes."""
    for sweep_name, (encoder_hash, f1) in TWO_STUDENTS.items():
        for seed in range(3):
            write_result(root / sweep_name, encoder_id, "eng", True, seed, f1 + 0.01 * seed, encoder_hash=encoder_hash)
            write_result(root / sweep_name, "teacher", "eng", True, seed, 0.75, encoder_hash="5555eeee6666ffff")
    return root


def test_one_id_for_two_encoders_is_refused_never_one_row(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    # The id encoder=distilled gave every student before it named them distilled-<corpus>-<key>.
    root = two_students_named_alike(tmp_path / "sweeps", "distilled")
    cfg = make_cfg("~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{root}]",
                   "report.baselines.mbert=teacher", "~report.baselines.distilmbert", "report.formats=[md]")
    with pytest.raises(ResultsError) as info:
        run(cfg)
    message = str(info.value)
    assert "encoder id 'distilled' names 2 different encoders: hash 3333cccc4444 (" in message
    assert "hash 1111aaaa2222 (" in message and "encoder.id=<name>" in message
    assert not (Path(cfg.paths.output_dir) / "table8.md").exists()


def test_same_encoder_twice_is_a_duplicate_and_an_unresolved_failure_merges(tmp_path: Path) -> None:
    # Same hash, task, language, mode and seed: a duplicate. A job that failed before its encoder was
    # resolved (hash null) is the same grid point, not a second encoder.
    first = write_result(tmp_path / "a", "student", "eng", True, 0, 0.8, encoder_hash="1111aaaa2222bbbb")
    write_result(tmp_path / "b", "student", "eng", True, 0, 0.8, encoder_hash="1111aaaa2222bbbb")
    failed = write_result(tmp_path / "c", "student", "eng", True, 0, None, status="failed")
    obj = json.loads(failed.read_text())
    obj["encoder"]["hash"] = None
    failed.write_text(json.dumps(obj))
    collection = collect([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert len(collection.ok) == 1 and len(collection.duplicates) == 1
    assert len(collection.duplicates[0][1]) == 2 and first.exists()


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
    assert ["f1", "Frozen", "student", "75.9 ± 0.6⋆†", "70.9 ± 0.6"] in table.data
    assert len(logged["table8/stats"].data) == 36
    assert len(logged["table8/pvalues"].data) == 72


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
    assert calls["logged"] == ["table8/cc_intent", "table8/stats", "table8/pvalues"]
    assert calls["finished"] == 1
    calls["logged"].clear()
    run(make_cfg("~experiment", "task=report", "logger=none", f"report.sweep_dirs=[{sweep}]", "report.baselines.distilmbert=distil",
                 "report.baselines.mbert=teacher", "report.stats.n_resamples=100", "report.formats=[csv]"))
    assert calls["logged"] == []  # no wandb logger, no W&B


# The case: 5 seeds, every teacher seed above every student seed (two-sided KS p = 2 / C(10, 5)).
STUDENT_F1 = [0.489, 0.490, 0.491, 0.492, 0.493]  # mean 49.1
TEACHER_F1 = [0.536, 0.537, 0.538, 0.539, 0.540]  # mean 53.8
DISTIL_F1 = [0.470, 0.471, 0.472, 0.473, 0.474]  # mean 47.2: the student beats this one


def five_seed_sweep(root: Path, student: list[float]) -> Path:
    for encoder, scores in (("student", student), ("teacher", TEACHER_F1), ("distil", DISTIL_F1)):
        for seed, f1 in enumerate(scores):
            write_result(root, encoder, "eng", True, seed, f1)
    return root


def table_for(root: Path, alternative: str):
    settings = StatsSettings(alternative=alternative, n_resamples=100)
    return build_table8(collect([root]), {"distilmbert": "distil", "mbert": "teacher"}, settings=settings)


def test_two_sided_marks_a_worse_student_worse_and_never_beats(tmp_path: Path) -> None:
    result = table_for(five_seed_sweep(tmp_path, STUDENT_F1), "two-sided")
    cell = result.tables[0].cell("f1", True, "student", "eng")
    assert cell.comparisons["mbert"].ks_pvalue == pytest.approx(2 / 252)  # 0.008, as in the issue
    assert cell.significant == {"distilmbert": "better", "mbert": "worse"}
    assert cell.marks == "⋆▼" and "†" not in cell.marks
    markdown = render_markdown(result)
    assert "| F1-Score | Frozen | student | 49.1 ± 0.2⋆▼ |" in markdown
    legend = markdown.split("\n\n")[2]
    assert "two-sided" in legend and "α = 0.05" in legend and "beats" not in legend
    assert "▼ significantly worse than it" in legend and "† significantly better than teacher (mbert role)" in legend
    # Both ways in the p-value table, with the direction of the mean difference.
    assert "| F1-Score | Frozen | student vs teacher | ↓ 0.0079 / 0.0079 |" in markdown
    assert "| F1-Score | Frozen | teacher vs student | ↑ 0.0079 / 0.0079 |" in markdown
    assert r"49.1 $\pm$ 0.2$^{\star}$$^{\blacktriangledown}$" in render_latex(result)

    # The one-sided default cannot call a worse model anything: no mark against the teacher.
    one_sided = table_for(tmp_path, "greater").tables[0].cell("f1", True, "student", "eng")
    assert one_sided.marks == "⋆" and one_sided.significant == {"distilmbert": "better"}


def test_two_sided_marks_a_better_student_better(tmp_path: Path) -> None:
    better = [t + 0.05 for t in TEACHER_F1]  # every student seed above every teacher seed
    result = table_for(five_seed_sweep(tmp_path, better), "two-sided")
    cell = result.tables[0].cell("f1", True, "student", "eng")
    assert cell.marks == "⋆†" and not {"▽", "▼"} & set(cell.marks)
    assert "| F1-Score | Frozen | student vs teacher | ↑ 0.0079 / 0.0079 |" in render_markdown(result)
    # One-sided: the same marks, now with the one-sided p-value 1 / C(10, 5).
    one_sided = table_for(tmp_path, "greater").tables[0].cell("f1", True, "student", "eng")
    assert one_sided.marks == "⋆†" and one_sided.comparisons["mbert"].ks_pvalue == pytest.approx(1 / 252)


def test_marks_must_be_distinct_and_show_sd_can_be_off(tmp_path: Path) -> None:
    collection = collect([five_seed_sweep(tmp_path, STUDENT_F1)])
    with pytest.raises(ValueError, match="two distinct non-empty marks"):
        build_table8(collection, {"distilmbert": "distil", "mbert": "teacher"},
                     worse_symbols={"distilmbert": "⋆", "mbert": "▼"})
    result = table_for(tmp_path, "greater")
    assert "| F1-Score | Frozen | student | 49.1⋆ |" in render_markdown(result, show_sd=False)  # the paper's look


def test_sweep_dirs_take_unquoted_globs_over_folders_with_equals(make_cfg: Callable[..., DictConfig], sweep: Path) -> None:
    # write_result's folders are named "encoder=student,freeze=True,lang=eng/seed=3": Hydra rejects
    # `=` in an unquoted value, a pattern reaches them.
    cfg = make_cfg("~experiment", "task=report", f"report.sweep_dirs=[{sweep}/encoder*/seed?1,{sweep}/encoder*/seed?2]")
    found = find_results(list(cfg.report.sweep_dirs))
    assert len(found) == 2 * 3 * 2 * 2  # seeds x encoders x langs x modes
    assert {json.loads(p.read_text())["seed"] for p in found} == {1, 2}
    with pytest.raises(ResultsError, match=r"report.sweep_dirs: the pattern .*nothing\*' matches no file"):
        find_results([f"{sweep}/nothing*"])


@pytest.mark.slow
def test_offline_wandb_run_holds_the_markdown_numbers(make_cfg: Callable[..., DictConfig], sweep: Path) -> None:
    """A real offline W&B run: the table files it writes carry exactly the cells of table8.md."""
    cfg = make_cfg(
        "~experiment", "task=report", f"report.sweep_dirs=[{sweep}]", "report.baselines.distilmbert=distil",
        "report.baselines.mbert=teacher", "report.stats.n_resamples=100", "report.formats=[md]",
        "logger.wandb.group=sweep-abc123",
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    markdown = (out / "table8.md").read_text(encoding="utf-8")
    md_rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.split("\n\n")[1].splitlines()[2:]]
    (offline,) = (out / "wandb").glob("offline-run-*")
    tables = offline / "files" / "media" / "table" / "table8"

    def table_json(name: str) -> dict:
        (path,) = tables.glob(f"{name}_*.table.json")
        return json.loads(path.read_text(encoding="utf-8"))

    display = table_json("cc_intent")
    assert display["columns"] == ["metric", "weights", "model", "eng", "esp"]
    # Same rows, same cell text (metric id instead of its display name).
    assert [row[1:] for row in display["data"]] == [row[1:] for row in md_rows]
    assert len(md_rows) == 18
    # The numeric table: mean and sd x100 are the numbers printed in each cell.
    stats = table_json("stats")
    column = {name: i for i, name in enumerate(stats["columns"])}
    printed = {(r[0], r[1], r[2], lang): text for r in md_rows for lang, text in zip(("eng", "esp"), r[3:])}
    assert len(stats["data"]) == len(printed) == 36
    for row in stats["data"]:
        key = (METRIC_NAMES[row[column["metric"]]], row[column["weights"]].capitalize(), row[column["encoder"]],
               row[column["lang"]])
        expected = f"{row[column['mean_x100']]:.1f} ± {row[column['sd_x100']]:.1f}{row[column['marks']] or ''}"
        assert printed[key] == expected
    assert len(table_json("pvalues")["data"]) == 72
    logged = next(offline.glob("run-*.wandb")).read_bytes()
    assert b"sweep-abc123" in logged and b"report-sweep-abc123" in logged  # the sweep's group, a readable name


def test_png_points_carry_their_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    annotated: list[str] = []
    original = Axes.annotate
    monkeypatch.setattr(Axes, "annotate", lambda self, text, *a, **k: annotated.append(text) or original(self, text, *a, **k))
    result = table_for(five_seed_sweep(tmp_path / "sweep", STUDENT_F1), "two-sided")
    (path,) = plot_f1(result, tmp_path)
    assert annotated == ["⋆▼"] and path.read_bytes()[:4] == b"\x89PNG"
