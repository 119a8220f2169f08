"""DistillationModule under a real Trainer (teacher frozen, loss goes down, export, exact resume) and its
objective: parity with the reference step, the layer-wise terms at initialisation, Q/K/V capture."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

from datamodules.distill import DistillDataModule
from domain_distil.common.configs import config_dir
from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.shards import ShardSettings, build_corpus
from domain_distil.modeling.export import export_model
from domain_distil.modeling.masking import MaskingConfig, mask_tokens
from domain_distil.modeling.mlm import mlm_body
from domain_distil.modeling.objectives import Objective, run_body
from domain_distil.modeling.objectives.attention import attention_loss, scaled_dot_log_probs
from domain_distil.modeling.objectives.base import ModelNeeds
from domain_distil.modeling.objectives.layerwise import layer_pair_losses
from domain_distil.modeling.student import StudentSpec, build_student
from lightning_modules.distillation import (
    DistillationModule,
    NonFiniteLossError,
    linear_warmup_decay,
    reference_total_steps,
)


@pytest.fixture(scope="module")
def corpus_dir(tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    words = "my order refund delivery account password card payment help cancel change track package".split()
    (root / "text").mkdir()
    lines = [" ".join(rng.choice(words, size=rng.integers(12, 40))) for _ in range(160)]
    (root / "text" / "eng.txt").write_text("\n".join(lines) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    return build_corpus(
        discover_files(root / "text"), tokenizer, root / "cache", ShardSettings(max_seq_length=64)
    )


def make_module(
    teacher_dir: Path, corpus_dir: Path, seed: int = 0, **kwargs
) -> tuple[DistillationModule, DistillDataModule]:
    torch.manual_seed(seed)
    teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    student = build_student(teacher, StudentSpec(num_layers=2))
    module = DistillationModule(
        student=student,
        teacher=teacher,
        token_counts=torch.from_numpy(np.load(corpus_dir / "token_counts.npy")),
        special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        optimizer=lambda params: torch.optim.AdamW(
            params, lr=kwargs.get("lr", 1e-3), betas=(0.9, 0.98), eps=1e-6
        ),
        seed=seed,
    )
    datamodule = DistillDataModule(
        corpus_dir, pad_token_id=tokenizer.pad_token_id, batch_size=4, seed=seed, max_length=64
    )
    return module, datamodule


def make_trainer(tmp_path: Path, max_steps: int, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        accumulate_grad_batches=2,
        gradient_clip_val=5.0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        deterministic=True,
        **kwargs,
    )


def test_teacher_stays_frozen_and_out_of_everything(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    seen_modes = []

    class WatchTeacher(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen_modes.append(pl_module.teacher.training)

    trainer = make_trainer(tmp_path, max_steps=4, callbacks=[WatchTeacher()], enable_checkpointing=False)
    trainer.fit(module, datamodule=datamodule)
    assert module.teacher.training is False and seen_modes and not any(seen_modes)
    assert all(not p.requires_grad for p in module.teacher.parameters())
    for name, tensor in module.teacher.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    optimizer_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimizer_params & {id(p) for p in module.teacher.parameters()}
    assert not any(k.startswith(("teacher", "_teacher")) for k in module.state_dict())
    # Position embeddings are frozen, so they are not in the optimizer either.
    assert id(module.student.distilbert.embeddings.position_embeddings.weight) not in optimizer_params


def _fixed_batch_loss(module: DistillationModule, corpus_dir: Path) -> float:
    datamodule = DistillDataModule(corpus_dir, pad_token_id=0, batch_size=16, seed=123, max_length=64)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module.eval()
    module._mask_generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        loss, _ = module.compute_loss(batch["input_ids"], batch["lengths"])
    return loss.item()


def test_a_few_steps_lower_the_loss(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir, lr=3e-3)
    before = _fixed_batch_loss(module, corpus_dir)
    make_trainer(tmp_path, max_steps=20, enable_checkpointing=False).fit(module, datamodule=datamodule)
    after = _fixed_batch_loss(module, corpus_dir)
    assert after < 0.9 * before, (before, after)


def test_nan_loss_stops_with_a_clear_message(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    with torch.no_grad():
        module.student.vocab_transform.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="NaN/inf distillation loss at global step 0"):
        make_trainer(tmp_path, max_steps=2, enable_checkpointing=False).fit(module, datamodule=datamodule)


def test_schedule_is_the_reference_one():
    assert reference_total_steps(batches_per_epoch=1000, accumulate=50, max_epochs=3) == 61
    multiplier = linear_warmup_decay(warmup_steps=4, total_steps=61)
    assert [multiplier(s) for s in (0, 2, 4)] == [0.0, 0.5, 1.0]
    assert multiplier(61) == 0.0 and multiplier(32) == pytest.approx(29 / 57)


def test_export_reloads_with_identical_outputs(tiny_teacher_dir, corpus_dir, tmp_path):
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    make_trainer(tmp_path, max_steps=2, enable_checkpointing=False).fit(module, datamodule=datamodule)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    out = export_model(module.student, tokenizer, tmp_path / "student", {"kind": "student"})
    encoded = tokenizer(["my order never arrived", "refund please"], padding=True, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    student = module.student.eval()
    with torch.no_grad():
        expected_logits = student(**inputs).logits
        expected_hidden = student.distilbert(**inputs).last_hidden_state
        mlm = AutoModelForMaskedLM.from_pretrained(out).eval()
        body = AutoModel.from_pretrained(out).eval()
        torch.testing.assert_close(mlm(**inputs).logits, expected_logits, rtol=0, atol=0)
        torch.testing.assert_close(body(**inputs).last_hidden_state, expected_hidden, rtol=0, atol=0)
    assert (
        AutoTokenizer.from_pretrained(out)("refund please")["input_ids"]
        == tokenizer("refund please")["input_ids"]
    )


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_resume_mid_epoch_matches_uninterrupted_run(tiny_teacher_dir, corpus_dir, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(0)
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    make_trainer(tmp_path / "a", max_steps=8, enable_checkpointing=False).fit(module, datamodule=datamodule)
    uninterrupted = {k: v.clone() for k, v in module.student.state_dict().items()}

    L.seed_everything(0)
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1, save_last=True
    )
    make_trainer(tmp_path / "b", max_steps=8, callbacks=[checkpoint, _StopAt(3)]).fit(
        module, datamodule=datamodule
    )
    # mid-epoch: 160 seqs / 4 = 40 batches
    assert datamodule.state_dict() == {"epoch": 0, "batches_seen": 6, "world_size": 1, "batch_size": 4}

    L.seed_everything(999)  # a different global state: the checkpoint must restore what matters
    module, datamodule = make_module(tiny_teacher_dir, corpus_dir, seed=0)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1, save_last=True
    )
    trainer = make_trainer(tmp_path / "b", max_steps=8, callbacks=[checkpoint])
    trainer.fit(module, datamodule=datamodule, ckpt_path="last")
    assert trainer.global_step == 8
    for name, tensor in module.student.state_dict().items():
        torch.testing.assert_close(tensor, uninterrupted[name], rtol=1e-5, atol=1e-6, msg=name)


def test_plain_progress_lines_reach_a_log_file(tiny_teacher_dir, corpus_dir, tmp_path, caplog):
    """Off a terminal (a log file under nohup/SLURM), the fit logs plain lines: tokens, tokens/s, ETA,
    and the manifest figure is the whole run's average."""
    import logging

    from callbacks.throughput import TokenThroughput

    module, datamodule = make_module(tiny_teacher_dir, corpus_dir)
    throughput = TokenThroughput(window_steps=2, plain_interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="domain_distil.progress"):
        make_trainer(tmp_path, max_steps=4, callbacks=[throughput], enable_checkpointing=False).fit(
            module, datamodule=datamodule)
    lines = [r.getMessage() for r in caplog.records if r.name == "domain_distil.progress"]
    assert any(line.startswith("distil | ") and "tokens/s" in line and "ETA" in line for line in lines), lines
    assert "done in" in lines[-1]
    assert throughput.run_tokens > 0 and throughput.run_average == pytest.approx(
        throughput.run_tokens / throughput.run_seconds)


# -- the objective: parity with the reference, the layer-wise terms at initialisation, Q/K/V capture --

def _tiny_pair(teacher_dir: Path, **spec) -> tuple[PreTrainedModel, PreTrainedModel, AutoTokenizer]:
    torch.manual_seed(0)
    teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir)
    return teacher, build_student(teacher, StudentSpec(num_layers=2, **spec)), AutoTokenizer.from_pretrained(teacher_dir)


def _module_for(teacher, student, tokenizer, objective: Objective, seed: int = 5) -> DistillationModule:
    return DistillationModule(
        student=student, teacher=teacher, token_counts=torch.ones(teacher.config.vocab_size),
        special_token_ids=tokenizer.all_special_ids, mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id, optimizer=torch.optim.AdamW, objective=objective, seed=seed,
    )


def _ids(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer(["my order never arrived, please help me track the package", "refund my card payment",
                       "cancel my account"], padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"].sum(-1)


def _default_objective(*overrides: str) -> Objective:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return Objective.from_config(compose(config_name="config", overrides=list(overrides)).distill)


def test_paper_recipe_equals_an_independent_implementation_with_the_new_terms_at_weight_0(tiny_teacher_dir):
    """The reference ``Distiller.step`` written with the torch.nn losses it uses, on full model outputs
    (every position's logits, ``output_hidden_states``), against ``compute_loss`` with today's
    default.yaml: 5/2/1 at T=2 and the layer-wise, attention and MiniLM terms present at weight 0."""
    teacher, student, tokenizer = _tiny_pair(tiny_teacher_dir)
    objective = _default_objective()
    assert {term.name for term in objective.terms} >= {"layers", "attn", "minilm"}
    module = _module_for(teacher, student, tokenizer, objective)
    ids, lengths = _ids(tokenizer)
    torch.manual_seed(11)  # the student's dropout draws, the same in both computations
    total, parts = module.compute_loss(ids, lengths)
    assert set(parts) == {"ce", "mlm", "cos"}

    batch = mask_tokens(ids, lengths, module.token_probs, tokenizer.mask_token_id, tokenizer.pad_token_id,
                        teacher.config.vocab_size, MaskingConfig(), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(11)
    with torch.no_grad():
        t_out = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    s_out = student(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    attended = batch.attention_mask
    s_sel, t_sel = s_out.logits[attended], t_out.logits[attended]
    loss_ce = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(s_sel / 2.0, dim=-1), torch.softmax(t_sel / 2.0, dim=-1)) * 2.0**2
    loss_mlm = torch.nn.CrossEntropyLoss(ignore_index=-100)(
        s_out.logits.view(-1, s_out.logits.size(-1)), batch.labels.view(-1))
    h_s, h_t = s_out.hidden_states[-1][attended], t_out.hidden_states[-1][attended]
    loss_cos = torch.nn.CosineEmbeddingLoss(reduction="mean")(h_s, h_t, h_s.new_ones(h_s.size(0)))
    reference = 5.0 * loss_ce + 2.0 * loss_mlm + 1.0 * loss_cos
    for name, value in (("ce", loss_ce), ("mlm", loss_mlm), ("cos", loss_cos)):
        assert parts[name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name
    assert total.item() == pytest.approx(reference.item(), rel=1e-6)


def _term_inputs(module: DistillationModule, ids: torch.Tensor, lengths: torch.Tensor):
    batch = mask_tokens(ids, lengths, module.token_probs, module.mask_token_id, module.pad_token_id,
                        module.vocab_size, MaskingConfig(), generator=torch.Generator().manual_seed(5))
    return module.term_inputs(batch, ids, ids)


def _tiny_xlmr_teacher() -> PreTrainedModel:
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=463, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=130, pad_token_id=0)
    return XLMRobertaForMaskedLM(config)


def test_layerwise_embedding_and_first_layer_terms_start_at_zero(tiny_teacher_dir):
    """Student layer 0 is teacher layer 0 and reads the teacher's own embeddings: without dropout both
    pairs are 0 at initialisation; the later layers read a shallower input and are not."""
    objective = _default_objective("distill=layerwise", "distill.terms.layers.metric=mse", "distill.terms.attn.weight=1")
    _, _, tokenizer = _tiny_pair(tiny_teacher_dir)
    ids, lengths = _ids(tokenizer)
    # An XLM-R teacher: the student is the same class cut to layers [0, 3], so the copies are exact.
    teacher = _tiny_xlmr_teacher()
    module = _module_for(teacher, build_student(teacher, StudentSpec(num_layers=2)), tokenizer, objective).eval()
    inputs = _term_inputs(module, ids, lengths)
    pairs = layer_pair_losses(inputs.student.hidden_states, inputs.teacher.hidden_states, (0, 3),
                              inputs.attention_mask, "mse")
    assert pairs[:2].tolist() == [0.0, 0.0] and pairs[2] > 1e-6
    first_attention = attention_loss(inputs.student.qkv[0], inputs.teacher.qkv[0], 4, inputs.attention_mask, "kl")
    assert first_attention.item() == 0.0
    # A BERT teacher: BERT adds the token-type vector before its LayerNorm. Folded into the student's
    # positions the embeddings agree up to float rounding (a different order of the same additions);
    # dropped, as in the reference (the default), the embedding term starts above 0.
    teacher, folded, _ = _tiny_pair(tiny_teacher_dir, fold_token_type_into_positions=True)
    inputs = _term_inputs(_module_for(teacher, folded, tokenizer, objective).eval(), ids, lengths)
    pairs = layer_pair_losses(inputs.student.hidden_states, inputs.teacher.hidden_states, (0, 3),
                              inputs.attention_mask, "cosine")
    assert pairs[0] <= 1e-6 and pairs[1] <= 1e-6 and pairs[2] > 1e-5
    teacher, dropped, _ = _tiny_pair(tiny_teacher_dir)
    inputs = _term_inputs(_module_for(teacher, dropped, tokenizer, objective).eval(), ids, lengths)
    assert layer_pair_losses(inputs.student.hidden_states, inputs.teacher.hidden_states, (0, 3),
                             inputs.attention_mask, "cosine")[0] > 1e-2
    # The module computes in the state the recipe trains in: the student's dropout is on in training.
    module = _module_for(teacher, folded, tokenizer, objective).train()
    inputs = _term_inputs(module, ids, lengths)
    assert layer_pair_losses(inputs.student.hidden_states, inputs.teacher.hidden_states, (0, 3),
                             inputs.attention_mask, "cosine")[0] > 1e-2


def test_captured_queries_and_keys_give_the_models_own_attention_probabilities(tiny_teacher_dir):
    """softmax(Q K^T / sqrt(d_h)) from the hooked projections equals what eager attention returns,
    for the BERT teacher and the DistilBERT student (transformers' own module names)."""
    teacher, student, tokenizer = _tiny_pair(tiny_teacher_dir)
    ids, lengths = _ids(tokenizer)
    mask = torch.arange(ids.size(1))[None, :] < lengths[:, None]
    for model in (teacher.eval(), student.eval()):
        needs = ModelNeeds(qkv_layers=frozenset({0, 1}))
        with torch.no_grad():
            captured = run_body(model, ids, mask, needs)
            model.set_attn_implementation("eager")
            eager = mlm_body(model)(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
            model.set_attn_implementation("sdpa")
        heads = model.config.num_attention_heads
        for layer in (0, 1):
            probabilities = scaled_dot_log_probs(captured.qkv[layer].query, captured.qkv[layer].key, heads, mask).exp()
            rows = mask[:, None, :, None].expand_as(probabilities)
            torch.testing.assert_close(probabilities[rows], eager[layer][rows], rtol=0, atol=1e-6)
