"""task=distill end to end: validation before any work, CLI run, export, cache hit."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig, BertModel

from domain_distil.corpus.reader import CorpusError
from domain_distil.stages.distil import cached_student, plan_from_config
from domain_distil.tasks.distill import ensure_student, run_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def text_dir(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    words = "my order refund delivery account password card payment help cancel change track".split()
    for lang in ("eng", "esp"):
        lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(14 + i % 20)) for i in range(60)]
        (folder / f"{lang}.txt").write_text("\n".join(lines) + "\n")
    return folder


def _overrides(teacher, text_dir, *extra):
    return [
        "task=distill",
        f"teacher.name_or_path={teacher}",
        f"corpus.dir={text_dir}",
        "student.num_layers=2",
        "logger=none",
        "distill.batch_size=8",
        "distill.trainer.accumulate_grad_batches=2",
        "distill.trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def test_plan_validates_masking_weights_and_corpus(make_cfg, tiny_teacher_dir, text_dir, tmp_path):
    plan = plan_from_config(make_cfg(*_overrides(tiny_teacher_dir, text_dir)))
    assert plan.teacher_has_mlm_head and sorted(plan.files) == ["eng", "esp"]
    assert plan.shard_settings.max_seq_length == 128  # clipped to the tiny teacher's position table
    with pytest.raises(ValueError, match="must sum to 1"):
        plan_from_config(make_cfg(*_overrides(tiny_teacher_dir, text_dir, "distill.masking.word_rand=0.2")))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CorpusError, match="corpus is empty"):
        plan_from_config(make_cfg(*_overrides(tiny_teacher_dir, tmp_path / "nothing")))
    with pytest.raises(ValueError, match="out of range"):
        plan_from_config(make_cfg(*_overrides(tiny_teacher_dir, text_dir, "student.layers=[0,9]")))


def test_teacher_without_mlm_head_refuses_soft_targets(make_cfg, text_dir, tmp_path):
    body = BertModel(
        BertConfig(
            vocab_size=463,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    body.save_pretrained(tmp_path / "headless")
    with pytest.raises(ValueError, match="no trained MLM head.*distill=hidden"):
        plan_from_config(make_cfg(*_overrides(tmp_path / "headless", text_dir)))
    plan = plan_from_config(
        make_cfg(
            *_overrides(
                tmp_path / "headless",
                text_dir,
                "distill.terms.ce.weight=0",
                "distill.terms.mlm.weight=0",
                "distill.terms.cos.weight=1",
            )
        )
    )
    assert not plan.teacher_has_mlm_head


def test_student_vocabulary_mismatch_is_refused(make_cfg, tiny_teacher_dir, text_dir, tmp_path):
    other = BertModel(
        BertConfig(
            vocab_size=999,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="vocab_size 999 != teacher's 463"):
        plan_from_config(
            make_cfg(*_overrides(tiny_teacher_dir, text_dir, f"student.name_or_path={tmp_path / 'other'}"))
        )


def test_unsupported_teacher_architecture(make_cfg, text_dir, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(
        tmp_path / "gpt2"
    )
    with pytest.raises(ValueError, match="'gpt2' is not supported"):
        plan_from_config(make_cfg(*_overrides(tmp_path / "gpt2", text_dir)))


def test_ensure_student_exports_and_then_hits_the_cache(make_cfg, tiny_teacher_dir, text_dir, monkeypatch, caplog):
    cfg = make_cfg(*_overrides(tiny_teacher_dir, text_dir))
    # The look-up a parent process asks before handing a distillation to a worker: nothing yet.
    assert cached_student(plan_from_config(cfg), run_settings(cfg, plan_from_config(cfg))) is None
    with caplog.at_level("INFO", logger="domain_distil.stages.distil"):
        path = ensure_student(cfg).path
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "student" and manifest["steps"] > 0 and manifest["corpus_hash"]
    assert manifest["teacher"] == str(tiny_teacher_dir) and "commit" in manifest["git"]
    assert set(manifest["losses"]) >= {"train/loss", "train/loss_ce", "train/loss_mlm", "train/loss_cos"}
    # Which losses ran and why: the paper's 5/2/1 with the teacher's own head, no MSE.
    ran = {name: term["runs"] for name, term in manifest["losses_run"].items()}
    assert ran == {"ce": True, "mlm": True, "cos": True, "mse": False, "layers": False, "attn": False, "minilm": False}
    assert "teacher's trained MLM head" in manifest["losses_run"]["ce"]["why"]
    assert manifest["effective"]["global_batch"] == 8 * 2 and manifest["tokens_per_sec"] > 0
    # The step count beside what it trained on: one epoch of batches of 8 sequences, 2 batches a step.
    sequences = sum(s["sequences"] for s in manifest["corpus_stats"].values())
    tokens = sum(s["tokens"] for s in manifest["corpus_stats"].values())
    assert manifest["steps"] == math.ceil(math.ceil(sequences / 8) / 2)
    assert (manifest["corpus_sequences"], manifest["corpus_tokens"], manifest["sequences_per_step"]) == (
        sequences, tokens, 16)
    assert (f"{manifest['steps']} optimizer steps on {tokens} corpus tokens in {sequences} sequences, 16 sequences "
            "per step: steps follow sequences, not tokens") in caplog.text
    assert AutoModelForMaskedLM.from_pretrained(path).config.model_type == "distilbert"
    assert AutoModel.from_pretrained(path).config.n_layers == 2
    monkeypatch.setattr("domain_distil.stages.distil.load_teacher", lambda *a, **k: pytest.fail("distilled again"))
    assert ensure_student(cfg).path == path
    hit = cached_student(plan_from_config(cfg), run_settings(cfg, plan_from_config(cfg)))
    assert hit is not None and hit.path == path and hit.manifest["key"] == path.name


@pytest.mark.slow
def test_cli_distill_writes_the_student(tiny_teacher_dir, text_dir, tmp_path):
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "run.py",
        *_overrides(tiny_teacher_dir, text_dir),
        f"paths.cache_dir={cache}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "logger=csv",
        "distill.trainer.log_every_n_steps=1",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    exported = [p for p in (cache / "students").iterdir() if (p / "manifest.json").exists()]
    assert len(exported) == 1 and f"Student: {exported[0]}" in result.stdout
    assert (exported[0] / "model.safetensors").exists() and (exported[0] / "tokenizer.json").exists()
    assert list((tmp_path / "logs").rglob("metrics.csv"))  # the CSV logger wrote the losses


def _headless_teacher_cfg(make_cfg, text_dir: Path, tmp_path: Path):
    """A distill config whose teacher has no MLM head (a BertModel) and asks for one to be fitted."""
    from tiny_models import tiny_bert_config, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    BertModel(tiny_bert_config(len(tokenizer))).save_pretrained(tmp_path / "headless")
    tokenizer.save_pretrained(tmp_path / "headless")
    head = "+teacher.mlm_head={strategy: fit, steps: 3, batch_size: 4, lr: 0.003, max_length: 32}"
    cfg = make_cfg(*_overrides(tmp_path / "headless", text_dir, head))
    return cfg


def test_headless_teacher_gets_a_fitted_head_then_distils(make_cfg, text_dir, tmp_path):
    cfg = _headless_teacher_cfg(make_cfg, text_dir, tmp_path)
    plan = plan_from_config(cfg)
    assert plan.fit_teacher_head and not plan.teacher_has_mlm_head
    manifest = json.loads((ensure_student(cfg).path / "manifest.json").read_text())
    assert manifest["teacher"] != str(tmp_path / "headless")  # the fitted-head copy was distilled from
    assert manifest["losses"]["train/loss_ce"] >= 0
    assert "fitted on the corpus" in manifest["losses_run"]["ce"]["why"]


def test_asking_the_cache_first_fits_the_head_once_and_keeps_the_plan(make_cfg, text_dir, tmp_path):
    """cached_student, then distil, on one plan (what the demo does): one head, one key, the plan unchanged."""
    from domain_distil.stages.distil import distil

    cfg = _headless_teacher_cfg(make_cfg, text_dir, tmp_path)
    plan = plan_from_config(cfg)
    run = run_settings(cfg, plan)
    assert cached_student(plan, run) is None
    student = distil(plan, run)
    assert plan.teacher_path == str(tmp_path / "headless") and not plan.teacher_has_mlm_head
    assert len(list((Path(cfg.paths.cache_dir) / "mlm_heads").iterdir())) == 1
    assert cached_student(plan, run).path == student.path == ensure_student(cfg).path


def test_compile_takes_only_true_false_or_auto():
    from domain_distil.common.errors import ConfigError
    from domain_distil.stages.distil import compile_setting

    assert compile_setting({"compile": True}) is True and compile_setting({"compile": "auto"}) == "auto"
    for setting in (1, 0, 1.0):  # equal to True or False, but not what the config means
        with pytest.raises(ConfigError, match=f"distill.compile must be auto, true or false, got {setting!r}"):
            compile_setting({"compile": setting})


@pytest.mark.slow
def test_cli_distill_under_ddp_on_two_cpu_processes(tiny_teacher_dir, text_dir, tmp_path):
    """The DDP path (gloo on CPU): rank-split batches, teacher outside DDP, one export by rank 0."""
    cache = tmp_path / "cache"
    command = [sys.executable, "run.py", *_overrides(tiny_teacher_dir, text_dir), f"paths.cache_dir={cache}",
               f"paths.log_dir={tmp_path / 'logs'}", "trainer.devices=2", "+trainer.strategy=ddp"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    exported = [p for p in (cache / "students").iterdir() if (p / "manifest.json").exists()]
    manifest = json.loads((exported[0] / "manifest.json").read_text())
    # 120 sequences at most, split over 2 ranks, batch 8, accumulation 2: ceil(ceil(n/2)/8/2) steps.
    sequences = sum(s["sequences"] for s in manifest["corpus_stats"].values())
    per_rank = math.ceil(sequences / 2)
    assert manifest["steps"] == math.ceil(math.ceil(per_rank / 8) / 2)


def test_classifier_seed_does_not_change_the_student(make_cfg, tiny_teacher_dir, text_dir, monkeypatch):
    first = ensure_student(make_cfg(*_overrides(tiny_teacher_dir, text_dir, "seed=0")))
    monkeypatch.setattr("domain_distil.stages.distil.load_teacher", lambda *a, **k: pytest.fail("a new seed distilled again"))
    assert ensure_student(make_cfg(*_overrides(tiny_teacher_dir, text_dir, "seed=7"))) == first
    monkeypatch.undo()
    assert ensure_student(make_cfg(*_overrides(tiny_teacher_dir, text_dir, "distill.seed=57"))) != first


def test_plan_checks_the_layerwise_and_minilm_terms_against_the_models(make_cfg, tiny_teacher_dir, text_dir, tmp_path):
    """Settings the two models cannot honour stop the plan with one line naming the key."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    from domain_distil.common.errors import ConfigError

    def plan(*extra):
        return plan_from_config(make_cfg(*_overrides(tiny_teacher_dir, text_dir, *extra)))

    assert plan("distill=layerwise", "distill.terms.attn.weight=1").objective.running[0].name == "layers"
    with pytest.raises(ConfigError, match=r"distill.terms.minilm.relation_heads=12 must divide both hidden sizes "
                                          r"\(student 32, teacher 32\)"):
        plan("distill=minilm", "distill.terms.minilm.relation_heads=12")
    with pytest.raises(ConfigError, match="distill.terms.minilm.teacher_layer=4 is out of range for a teacher with 4"):
        plan("distill=minilm", "distill.terms.minilm.teacher_layer=4")
    unmapped = DistilBertForMaskedLM(DistilBertConfig(vocab_size=463, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                      max_position_embeddings=128))
    unmapped.save_pretrained(tmp_path / "unmapped")
    with pytest.raises(ConfigError, match="distill.terms.layers compares each student layer with the teacher layer it "
                                          "was copied from, but this student records no layer map"):
        plan("distill=layerwise", f"student.name_or_path={tmp_path / 'unmapped'}")
    plan("distill=minilm", f"student.name_or_path={tmp_path / 'unmapped'}")  # MiniLM needs no layer map
