"""More tokens per second: bf16 autocast on CPUs with bf16 units, the padding share, and torch.compile.

The measurements behind the defaults are ``benchmarks/distill_speed.py``; these tests pin the
behaviour: which precision a distillation gets where, that the teacher runs under the trainer's
autocast, what the manifest's padding share counts, where the loss is compiled and that it then
computes the same loss.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from transformers import AutoModelForMaskedLM, AutoTokenizer

from callbacks.throughput import TokenThroughput
from datamodules.distill import pad_batch
from domain_distil.artifacts.students import recipe_hash
from domain_distil.common import cpu
from domain_distil.common.configs import config_dir
from domain_distil.common.errors import ConfigError
from domain_distil.conversion.int8 import int8_instructions
from domain_distil.modeling.mlm import mlm_body
from domain_distil.modeling.objectives import Objective
from domain_distil.modeling.student import StudentSpec, build_student
from domain_distil.stages.distil import compile_setting, compiles_loss
from lightning_modules.distillation import DistillationModule


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(list(tmp_path.glob('cpuinfo-*')))}"
    # two logical CPUs, as /proc/cpuinfo lists them: the flags line repeats
    path.write_text("".join(f"processor\t: {i}\nmodel name\t: X\nflags\t\t: {flags}\n\n" for i in range(2)))
    return path


def test_fp32_on_a_cpu_with_bf16_units_becomes_bf16_mixed(tmp_path):
    bf16, amx, plain = (_cpuinfo(tmp_path, f) for f in ("avx2 avx512f avx512_bf16", "avx2 amx_tile amx_bf16",
                                                           "avx2 avx512f avx512_vnni"))
    assert cpu.distill_precision("cpu", "32-true", bf16) == "bf16-mixed"
    assert cpu.distill_precision("cpu", "32", amx) == "bf16-mixed"
    assert cpu.distill_precision("cpu", "32-true", plain) == "32-true"
    assert cpu.distill_precision("cpu", "32-true", tmp_path / "absent") == "32-true"  # not Linux: as configured
    assert cpu.distill_precision("gpu", "bf16-mixed", bf16) == "bf16-mixed"
    assert cpu.distill_precision("gpu", "32-true", bf16) == "32-true"  # only the CPU's own units decide
    assert cpu.bf16_instructions(amx) == "amx_bf16"
    assert cpu.bf16_instructions(plain) == "no bf16 instructions (no avx512_bf16/amx_bf16)"
    assert int8_instructions(plain) == "avx512_vnni"  # the one flags reader serves both


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_distillation_defaults_to_bf16_where_the_cpu_has_it_and_the_demo_keeps_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "CPUINFO", _cpuinfo(tmp_path, "avx2 avx512_bf16"))
    cfg = _compose("task=distill")
    assert cfg.trainer.precision == "32-true"  # the trainer group itself (classification) is unchanged
    assert cfg.distill.trainer.precision == "bf16-mixed"
    demo = _compose("experiment=demo").demo
    assert demo.distill.trainer.precision == "32-true"  # docs/demo.md's students were made in fp32
    assert _compose("task=distill", "distill.trainer.precision=32-true").distill.trainer.precision == "32-true"
    assert _compose("task=distill", "trainer=gpu").distill.trainer.precision == "bf16-mixed"
    monkeypatch.setattr(cpu, "CPUINFO", _cpuinfo(tmp_path, "avx2 avx512f"))
    assert _compose("task=distill").distill.trainer.precision == "32-true"


def test_precision_and_compile_stay_out_of_the_recipe_hash():
    """The key records them in its effective run instead, so no cached student's key moves."""
    distill = OmegaConf.to_container(_compose("task=distill").distill, resolve=True)
    student = OmegaConf.to_container(_compose("task=distill").student, resolve=True)
    bare = {**distill, "trainer": {k: v for k, v in distill["trainer"].items() if k != "precision"}}
    bare.pop("compile")
    other = {**distill, "compile": True, "trainer": {**distill["trainer"], "precision": "bf16-mixed"}}
    assert recipe_hash(bare, student) == recipe_hash(distill, student) == recipe_hash(other, student)


def test_teacher_and_student_run_under_the_trainers_bf16_autocast(tiny_teacher_dir, tmp_path):
    """trainer.precision=bf16-mixed on the CPU: Lightning's autocast covers the teacher's forward too."""
    module = _tiny_module(tiny_teacher_dir)
    teacher = module.teacher
    dtypes: dict[str, set[torch.dtype]] = {"teacher": set(), "student": set()}
    for name, model in (("teacher", teacher), ("student", module.student)):
        first_linear = next(m for m in mlm_body(model).modules() if isinstance(m, torch.nn.Linear))
        first_linear.register_forward_hook(lambda _m, _a, out, name=name: dtypes[name].add(out.dtype))
    generator = torch.Generator().manual_seed(0)
    batches = [pad_batch([torch.randint(5, 60, (n,), generator=generator).numpy() for n in (20, 17, 12)],
                         module.pad_token_id) for _ in range(3)]
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert dtypes == {"teacher": {torch.bfloat16}, "student": {torch.bfloat16}}
    assert all(p.grad is None for p in teacher.parameters())  # no_grad: the teacher never enters autograd
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


class _PaddedBatches(L.LightningModule):
    """Batches of given (real tokens, padded positions); training only touches a dummy weight."""

    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.sizes = sizes
        self.weight = torch.nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):
        return self.weight.sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        batches = [{"n_tokens": tokens, "n_positions": positions} for tokens, positions in self.sizes]
        return torch.utils.data.DataLoader(batches, batch_size=None)


def test_padding_share_counts_every_batch_of_every_epoch(tmp_path):
    # 5 batches an epoch, windows of 2: each epoch ends inside a window, which must still count.
    sizes = [(30, 40), (10, 10), (8, 16), (20, 20), (12, 14)]
    meter = TokenThroughput(window_steps=2)
    L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, callbacks=[meter],
              default_root_dir=tmp_path).fit(_PaddedBatches(sizes))
    assert meter.run_tokens == 2 * 80
    assert meter.run_padding_share == pytest.approx(1 - 80 / 100)
    assert pad_batch([torch.ones(3).numpy(), torch.ones(5).numpy()], 0)["n_positions"] == 10


def test_compile_auto_is_on_only_where_it_measured_faster():
    """On the CPU, for a recipe reading logits over a large vocabulary (benchmarks/distill_speed.py)."""
    paper, hidden = Objective.paper(), Objective.from_config({"terms": {"cos": {"weight": 1.0}}})
    assert compiles_loss("auto", True, paper, 119_547)
    assert not compiles_loss("auto", True, hidden, 119_547)  # the demo's recipe: no vocabulary-sized work
    assert not compiles_loss("auto", True, paper, 463)  # the tiny test teacher: nothing to gain
    assert not compiles_loss("auto", False, paper, 119_547)  # GPUs were not measured
    assert compiles_loss(True, False, hidden, 10) and not compiles_loss(False, True, paper, 119_547)
    assert compile_setting({}) is False  # older configs
    with pytest.raises(ConfigError, match="distill.compile must be auto, true or false, got 'yes'"):
        compile_setting({"compile": "yes"})


def _tiny_module(teacher_dir: Path) -> DistillationModule:
    torch.manual_seed(0)
    teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    return DistillationModule(
        student=build_student(teacher, StudentSpec(num_layers=2)), teacher=teacher,
        token_counts=torch.ones(teacher.config.vocab_size), special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
    )


@pytest.mark.slow
def test_the_compiled_loss_equals_the_eager_one(tiny_teacher_dir):
    eager = _tiny_module(tiny_teacher_dir)
    compiled = copy.copy(eager)  # the same models, its own loss function
    compiled.compile_loss()
    assert compiled._objective_loss is not eager._objective_loss
    eager.student.eval()
    generator = torch.Generator().manual_seed(0)
    batch = pad_batch([torch.randint(5, 60, (n,), generator=generator).numpy() for n in (20, 17, 12)], 0)
    losses = []
    for module in (eager, compiled):
        module._mask_generator = None  # the same masks for both
        total, terms = module.compute_loss(batch["input_ids"], batch["lengths"])
        total.backward()
        losses.append((float(total), {k: float(v) for k, v in terms.items()}))
    assert losses[0][1].keys() == {"ce", "mlm", "cos"}
    assert losses[1][0] == pytest.approx(losses[0][0], rel=1e-5)
    assert losses[1][1] == pytest.approx(losses[0][1], rel=1e-5)
