"""Experiment configs compose as documented; budget subsets; a tiny data sweep end to end."""

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from domain_distil.common.configs import config_dir
from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.subset import budget_subset
from domain_distil.tasks.data_sweep import budget_id

CONF_DIR = str(config_dir())
EXPERIMENTS = sorted(p.stem for p in Path(CONF_DIR, "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}"], return_hydra_config=True)
    from domain_distil.tasks import available_tasks

    assert cfg.task in available_tasks()
    if name.startswith("paper_"):
        params = cfg.hydra.sweeper.params
        assert params.encoder == "distilled,distilmbert,teacher" and params.seed == "range(10)"
        assert cfg.teacher.name_or_path == "bert-base-multilingual-cased"
        assert cfg.report.baselines.mbert == "teacher"
    if name == "paper_td":
        assert params.lang == "eng,esp,jap,por,rus" and dict(cfg.corpus.source.budgets)["eng"] == 1.58
    if name == "paper_cc":
        assert params.lang == "eng,esp,jap,por" and dict(cfg.corpus.source.budgets)["esp"] == 0.60


def test_paper_experiments_share_one_protocol():
    """paper_cc extends paper_td, wiki_control extends data_sweep; all four use the paper's head."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfgs = {name: compose(config_name="config", overrides=[f"experiment={name}"])
                for name in ("paper_td", "paper_cc", "data_sweep", "wiki_control")}
    assert all(cfg.head.standardize_inputs is False for cfg in cfgs.values())
    td, cc = cfgs["paper_td"], cfgs["paper_cc"]
    assert (cc.task, cc.trainer.accelerator, cc.report.expected.seeds) == (td.task, "gpu", td.report.expected.seeds)
    assert cc.corpus.name == "conversational" and list(cc.report.expected.langs) == ["eng", "esp", "jap", "por"]
    sweep, wiki = cfgs["data_sweep"], cfgs["wiki_control"]
    assert wiki.corpus.name == "wikipedia" and list(wiki.data_sweep.budgets_gb) == [3.0]
    assert wiki.report.sweep_dirs == sweep.report.sweep_dirs  # its results land beside the data sweep's


def test_tasks_compose_without_the_demo():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        bare = compose(config_name="config")
        demo = compose(config_name="config", overrides=["experiment=demo"])
    assert bare.task == "distill" and "demo" not in bare and bare.report.sweep_dirs == ["${paths.log_dir}/classify"]
    assert demo.task == "demo" and demo.demo.teacher.builder._target_.endswith("prepare_me5_small")
    assert demo.demo.distill.terms.ce.weight == 0 and demo.demo.distill.terms.cos.weight == 1  # hidden, under demo
    # The demo's choices live in its own section: the root groups keep mBERT and 5/2/1.
    for cfg in (bare, demo):
        assert cfg.teacher.name_or_path == "bert-base-multilingual-cased"
        terms = cfg.distill.terms
        assert (terms.ce.weight, terms.mlm.weight, terms.cos.weight) == (5.0, 2.0, 1.0)


# The documented command lines that mean the demo without naming it (README.md, docs/demo.md,
# docs/distillation.md, docs/generate_demo.py), and some that must not.
DEMO_COMMANDS = [[], ["--cfg", "job"], ["demo.trimmed_student=true"], ["distill@demo.distill=sanh", "trainer=gpu"],
                 ["task=demo"], ["hydra.run.dir=/tmp/first"], ["-m", "seed=range(10)", "lang=eng,esp,jap,por,rus"]]
OTHER_COMMANDS = [["task=distill"], ["~experiment", "task=report"], ["experiment=paper_td", "task=report"],
                  ["-m", "experiment=paper_cc"], ["-cn", "my_config"], ["--config-name=my_config", "lang=esp"]]


@pytest.mark.parametrize("argv", DEMO_COMMANDS, ids=" ".join)
def test_a_command_line_naming_no_experiment_and_no_task_runs_the_demo(argv):
    from domain_distil.cli import demo_by_default

    arguments = demo_by_default(argv)
    assert arguments.count("experiment=demo") == 1 and sorted(arguments) == sorted([*argv, "experiment=demo"])
    at = [i for i, arg in enumerate(arguments) if "=" in arg]
    assert at == list(range(at[0], at[0] + len(at)))  # Hydra's argparse takes the overrides as one run
    one_job = ["experiment=demo"] if "-m" in argv else arguments  # compose() takes no sweep
    overrides = [arg for arg in one_job if "=" in arg and not arg.startswith("hydra.")]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    assert cfg.task == "demo" and "demo" in cfg


@pytest.mark.parametrize("argv", OTHER_COMMANDS, ids=" ".join)
def test_a_command_line_naming_an_experiment_or_a_task_is_left_alone(argv):
    from domain_distil.cli import demo_by_default

    assert demo_by_default(argv) == argv


def test_bare_run_py_composes_the_demo(monkeypatch, capsys):
    """README's first command, `python run.py`, through the real entry point (`--cfg job`: compose only)."""
    import yaml
    from hydra.core.global_hydra import GlobalHydra

    from domain_distil import cli

    printed = {}
    for argv in (["--cfg", "job"], ["task=distill", "--cfg", "job"]):
        monkeypatch.setattr(sys, "argv", ["run.py", *argv])
        try:
            cli.main()
        finally:
            GlobalHydra.instance().clear()
        printed[argv[0]] = yaml.safe_load(capsys.readouterr().out)
    assert printed["--cfg"]["task"] == "demo" and "demo" in printed["--cfg"]
    assert printed["task=distill"]["task"] == "distill" and "demo" not in printed["task=distill"]


def test_budget_ids_match_the_paper():
    assert [budget_id("TD", b) for b in (0.3, 1.5, 2.1, 3.0)] == ["TD0.3", "TD1.5", "TD2.1", "TD3.0"]
    assert budget_id("Wiki", 3.0) == "Wiki3.0"


def test_budget_subsets_are_accurate_and_nested(tmp_path):
    lines = [f"document number {i} " + "word " * (i % 37) for i in range(3000)]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "eng.txt").write_text("\n".join(lines) + "\n")
    files = discover_files(tmp_path / "c")
    total = sum(len(line.encode()) + 1 for line in lines)
    small = budget_subset(files, {"eng": total * 0.2 / 1e9}, seed=0, cache_dir=tmp_path / "cache")
    large = budget_subset(files, {"eng": total * 0.5 / 1e9}, seed=0, cache_dir=tmp_path / "cache")
    small_docs = (small / "eng.txt").read_text().splitlines()
    large_docs = (large / "eng.txt").read_text().splitlines()
    for docs, share in ((small_docs, 0.2), (large_docs, 0.5)):
        written = sum(len(d.encode()) + 1 for d in docs)
        assert share * total * 0.99 <= written <= share * total + 1  # within 1%, never over (+1: GB rounding)
    assert len(set(small_docs) - set(large_docs)) <= 0.02 * len(small_docs)  # nested samples
    with pytest.raises(ValueError, match="less than the"):
        budget_subset(files, {"eng": total * 2 / 1e9}, seed=0, cache_dir=tmp_path / "cache")
