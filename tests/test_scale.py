"""Scale: caches under concurrency, throughput summed over ranks, multi-node, launchers, GPU check.

The multi-node claim is checked on one machine: two ``torchrun --nnodes=2`` launches that meet on
127.0.0.1 over gloo distil the same student, bit for bit within 1e-6, as one node with two
processes; SLURM cannot run here, so its presets are checked down to the sbatch file they produce.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cache_builders import SUBSET_LINES, build_all_caches
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from safetensors.torch import load_file
from scripts import load_script
from tiny_tasks import classify_overrides, intent_rows, write_jsonl

from callbacks.throughput import TokenThroughput
from domain_distil.common.configs import config_dir

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = str(config_dir())
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
       "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def _leftovers(folder: Path) -> list[str]:
    """Hidden files or folders (temp folders, lock files) under ``folder``, recursively."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# ------------------------------------------------------------------------------------ caches
@pytest.mark.slow
def test_two_processes_building_the_same_caches_leave_one_valid_entry_each(tiny_teacher_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "eng.txt").write_text("\n".join(SUBSET_LINES) + "\n")
    shared, alone, log = tmp_path / "shared", tmp_path / "alone", tmp_path / "builds.log"

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    args = (str(tiny_teacher_dir), str(corpus), str(shared), str(log), barrier)
    workers = [context.Process(target=build_all_caches, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    # One build per entry, although both processes asked for each at the same moment.
    builds = log.read_text().split()
    assert sorted(builds[0::2]) == ["corpus_subsets", "features", "students"]
    # Only entries remain: no temp folders, no lock files.
    assert _leftovers(shared) == []
    subset = next((shared / "corpus_subsets").iterdir())
    feature = next((shared / "features").iterdir())
    student = shared / "students" / "abc"
    assert sorted(p.name for p in (shared / "students").iterdir()) == ["abc"]
    assert json.loads((student / "manifest.json").read_text())["writer"] in {w.pid for w in workers}

    # Each entry equals what one process alone builds (here, in the test process).
    class _NoWait:
        def wait(self) -> None:
            pass

    build_all_caches(str(tiny_teacher_dir), str(corpus), str(alone), str(tmp_path / "single.log"), _NoWait())
    ref_subset = next((alone / "corpus_subsets").iterdir())
    assert subset.name == ref_subset.name
    assert (subset / "eng.txt").read_bytes() == (ref_subset / "eng.txt").read_bytes()
    assert json.loads((subset / "manifest.json").read_text()) == json.loads((ref_subset / "manifest.json").read_text())
    ref_feature = alone / "features" / feature.name
    for name, tensor in load_file(feature / "features.safetensors").items():
        assert torch.equal(tensor, load_file(ref_feature / "features.safetensors")[name]), name
    ref_student = load_file(alone / "students" / "abc" / "model.safetensors")
    got = load_file(student / "model.safetensors")
    assert got.keys() == ref_student.keys() and all(torch.equal(got[k], ref_student[k]) for k in got)


def test_a_failed_build_leaves_nothing_and_the_next_one_succeeds(tmp_path):
    from domain_distil.common.locking import build_entry, entry_lock

    def fail(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_entry(tmp_path / "entry", fail)
    assert list(tmp_path.iterdir()) == []
    # A caller that already holds the entry's lock may call a writer that locks it again.
    with entry_lock(tmp_path / "entry"):
        out = build_entry(tmp_path / "entry", lambda tmp: (tmp / "done").write_text("ok"))
    assert (out / "done").read_text() == "ok" and [p.name for p in tmp_path.iterdir()] == ["entry"]


# ------------------------------------------------------------------------------------ throughput
class _Batches(torch.utils.data.Dataset):
    """Rank r's batches hold 10 * (r + 1) tokens each: ranks differ, as they do with real data."""

    def __init__(self, rank: int, n: int) -> None:
        self.rank, self.n = rank, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"x": torch.ones(1, 4), "n_tokens": 10 * (self.rank + 1)}


def _tiny_module():
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch["x"]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(_Batches(self.global_rank, 6), batch_size=None)

    return Tiny()


def test_throughput_counts_every_token_and_averages_the_whole_run(tmp_path):
    import lightning as L

    meter = TokenThroughput(window_steps=2)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[meter],
                        default_root_dir=tmp_path)
    trainer.fit(_tiny_module())
    assert len(meter.history) == 6 and all(rate > 0 for rate in meter.history)  # 2 epochs x 6 batches / 2
    assert meter.run_tokens == 2 * 6 * 10
    assert meter.run_average == pytest.approx(meter.run_tokens / meter.run_seconds)
    with pytest.raises(ValueError, match="window_steps"):
        TokenThroughput(window_steps=0)


_DDP_SCRIPT = """
import json, sys
import lightning as L
sys.path[:0] = [{root!r}, {tests!r}]
from callbacks.throughput import TokenThroughput
from test_scale import _tiny_module
meter = TokenThroughput(window_steps=2)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[meter], use_distributed_sampler=False, default_root_dir={out!r})
trainer.fit(_tiny_module())
with open({out!r} + f"/rank{{trainer.global_rank}}.json", "w") as handle:
    json.dump({{"run_tokens": meter.run_tokens, "windows": len(meter.history)}}, handle)
"""


@pytest.mark.slow
def test_throughput_under_ddp_is_the_sum_over_ranks(tmp_path):
    script = tmp_path / "ddp_throughput.py"
    script.write_text(_DDP_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(tmp_path)))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # rank 0: 6 x 10 tokens, rank 1: 6 x 20. Rank 0's count times the world size would be 120.
    assert ranks[0] == ranks[1] == {"run_tokens": 180, "windows": 3}


# ------------------------------------------------------------------------------------ multi-node
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distill_overrides(teacher: Path, texts: Path, cache: Path, logs: Path) -> list[str]:
    return [
        "task=distill", f"teacher.name_or_path={teacher}", f"corpus.dir={texts}", "student.num_layers=2",
        "logger=none", "distill.batch_size=4", "distill.trainer.accumulate_grad_batches=2",
        "distill.trainer.max_epochs=1", "distill.trainer.log_every_n_steps=2", "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu", "trainer.precision=32-true", f"paths.cache_dir={cache}", f"paths.log_dir={logs}",
    ]


def _exported(cache: Path) -> list[Path]:
    return [p for p in (cache / "students").iterdir() if (p / "manifest.json").is_file()]


@pytest.mark.slow
def test_two_nodes_distil_exactly_like_one_node_with_two_processes(tiny_teacher_dir, tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    words = "my order refund delivery account password card payment help cancel change track".split()
    for lang in ("eng", "esp"):
        lines = [" ".join(words[(i * 5 + j) % len(words)] for j in range(10 + i % 15)) for i in range(24)]
        (texts / f"{lang}.txt").write_text("\n".join(lines) + "\n")

    # 2 nodes x 1 process: two torchrun launches that rendezvous on 127.0.0.1 (gloo on CPU).
    port = _free_port()
    two_nodes = tmp_path / "two_nodes"
    launches = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
             f"--node-rank={node}", "--master-addr=127.0.0.1", f"--master-port={port}", "run.py",
             *_distill_overrides(tiny_teacher_dir, texts, two_nodes / "cache", two_nodes / "logs"),
             "trainer=ddp_multinode", "trainer.num_nodes=2", "trainer.devices=1"],
            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for node in (0, 1)
    ]
    try:
        outputs = [launch.communicate(timeout=240)[0] for launch in launches]
    finally:  # one failed node leaves the other waiting at the rendezvous: never leave it running
        for launch in launches:
            if launch.poll() is None:
                launch.kill()
    for launch, output in zip(launches, outputs):
        assert launch.returncode == 0, output[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in "".join(outputs)

    # 1 node x 2 processes, Lightning's own launcher, a separate cache so it really distils.
    one_node = tmp_path / "one_node"
    done = subprocess.run(
        [sys.executable, "run.py", *_distill_overrides(tiny_teacher_dir, texts, one_node / "cache", one_node / "logs"),
         "trainer=ddp", "trainer.devices=2"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    students = {}
    for name, run in (("two_nodes", two_nodes), ("one_node", one_node)):
        exported = _exported(run / "cache")
        assert len(exported) == 1, f"{name}: {exported}"  # exported exactly once, by global rank 0
        assert not [p for p in (run / "cache" / "students").iterdir() if p.name.startswith(".")]
        manifest = json.loads((exported[0] / "manifest.json").read_text())
        assert manifest["steps"] > 0 and manifest["tokens_per_sec"] > 0
        students[name] = load_file(exported[0] / "model.safetensors")
    assert students["two_nodes"].keys() == students["one_node"].keys()
    for key, tensor in students["one_node"].items():
        torch.testing.assert_close(students["two_nodes"][key], tensor, rtol=0, atol=1e-6, msg=key)


# ------------------------------------------------------------------------------------ launchers
@pytest.mark.slow
def test_submitit_local_multirun_completes_both_jobs(tiny_teacher_dir, tmp_path):
    tasks = tmp_path / "tasks"
    write_jsonl(tasks / "cc.jsonl", intent_rows(langs=("eng",)))
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "run.py", "-m", "hydra/launcher=submitit_local", "seed=0,1",
        *classify_overrides(tiny_teacher_dir, tasks, "classify.trainer.max_epochs=1", "logger=none"),
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}",
        "hydra.launcher.timeout_min=5", "hydra.job.config.override_dirname.exclude_keys=[seed,encoder.name_or_path,"
        "cls_task.dir,paths.log_dir,paths.cache_dir,hydra.launcher.timeout_min]",
    ]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert sorted(r["seed"] for r in records) == [0, 1] and {r["status"] for r in records} == {"ok"}
    assert list(sweep.glob(".submitit/*/*_log.out"))  # the jobs ran through submitit
    # Both jobs wanted the same frozen features at once: three splits, each encoded once.
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 3


def _sbatch_text(overrides: list[str], tmp_path: Path, monkeypatch) -> str:
    """The sbatch file hydra-submitit-launcher would submit for this config (no cluster needed)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")  # submitit looks for srun
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[*overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.job.name=run"])
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")
    # The same mapping as the plugin's BaseSubmititLauncher.launch
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    return executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "uid")


def test_slurm_presets_request_the_documented_allocation(tmp_path, monkeypatch):
    distill = _sbatch_text(["hydra/launcher=submitit_slurm_distill", "task=distill", "trainer=ddp_multinode",
                            "trainer.num_nodes=4", "hydra.launcher.partition=gpu"], tmp_path, monkeypatch)
    for line in ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu", "--time=4320"):
        assert f"#SBATCH {line}\n" in distill, line
    assert "\nsrun " in distill  # one srun task per GPU: Lightning's SLURMEnvironment finds the ranks

    # docs/scale.md's 300-job classification sweep: the paper_td grid, one GPU per job.
    sweep = ["experiment=paper_td", "hydra/launcher=submitit_slurm_classify"]
    classify = _sbatch_text(sweep, tmp_path, monkeypatch)
    for line in ("--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1", "--time=60"):
        assert f"#SBATCH {line}\n" in classify, line
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=sweep, return_hydra_config=True)
    assert (cfg.task, cfg.trainer.devices, cfg.trainer.accelerator) == ("classify", 1, "gpu")
    grid = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
    assert math.prod(len(list(o.sweep_iterator())) for o in grid) == 300


def test_multinode_trainer_config_is_ddp_plus_num_nodes():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["task=distill", "trainer=ddp_multinode", "trainer.num_nodes=4"])
        ddp = compose(config_name="config", overrides=["task=distill", "trainer=ddp"])
    multinode = OmegaConf.to_container(cfg.trainer)
    assert multinode.pop("num_nodes") == 4 and multinode == OmegaConf.to_container(ddp.trainer)
    assert (cfg.trainer.strategy, cfg.trainer.precision) == ("ddp", "bf16-mixed")


# ------------------------------------------------------------------------------------ GPU check
def _gpu_check():
    return load_script("benchmarks/gpu_check.py")


def test_gpu_check_flops_formula_arguments_and_dry_run(capsys):
    from transformers import BertConfig, BertForMaskedLM

    gpu_check = _gpu_check()
    config = BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    with torch.device("meta"):
        teacher = BertForMaskedLM(config)
    # Linear weights per layer: q, k, v, o (4 x 8 x 8) + FFN (2 x 8 x 16) = 512; MLM transform 64; decoder 800.
    assert gpu_check.linear_weights(teacher) == 2 * 512 + 64 + 800
    assert gpu_check.forward_flops_per_token(teacher, 2, 8, seq_len=10) == 2 * 1888 + 4 * 2 * 10 * 8
    assert gpu_check.mfu(1000.0, 2 * 10**9, gpu_check.peak_flops("NVIDIA H100 80GB HBM3", None)) == 2e12 / 989e12
    assert gpu_check.peak_flops("NVIDIA H100 PCIe", None) == 756e12 and gpu_check.peak_flops("Unknown", 100) == 1e14
    assert gpu_check.mfu(1000.0, 10, gpu_check.peak_flops("Unknown", None)) is None

    with pytest.raises(SystemExit):
        gpu_check.parse_args(["bogus"])
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--steps", "5", "--window", "10"])
    assert gpu_check.parse_args([]).checks == ["throughput", "resume", "classify"]

    # The dry run builds the real mBERT-shaped teacher and Distil* student on the meta device.
    assert gpu_check.main(["--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "teacher 178.0 M params, student 135.4 M, 1.176 GFLOPs per distilled token" in printed
    if not torch.cuda.is_available():
        assert gpu_check.main(["resume"]) == 2  # fails fast, with a message, before any work
        assert "no CUDA device" in capsys.readouterr().err
