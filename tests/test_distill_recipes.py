"""Distillation recipes by name (conf/distill/<recipe>.yaml): each runs exactly the losses it names,
keeps every other distill setting, and says which losses ran and why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from transformers import AutoModelForMaskedLM, AutoTokenizer

from domain_distil.common.configs import config_dir
from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import hash_object
from domain_distil.modeling.distill_losses import LossWeights, describe_recipe, loss_terms
from domain_distil.modeling.student import StudentSpec, build_student
from lightning_modules.distillation import DistillationModule

RECIPE_TERMS = {"sanh": {"ce", "mlm", "cos"}, "hidden": {"cos"}, "sanh_mse": {"mse", "mlm", "cos"}}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_recipes_keep_the_default_training_settings():
    default = OmegaConf.to_container(_compose().distill)
    for recipe in RECIPE_TERMS:
        chosen = OmegaConf.to_container(_compose(f"distill={recipe}", "distill.batch_size=7").distill)
        assert chosen["batch_size"] == 7
        differing = {k for k in default if default[k] != chosen[k]} - {"batch_size"}
        assert differing <= {"alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse"}, (recipe, differing)
    sanh = LossWeights.from_config(_compose("distill=sanh").distill)
    assert (sanh.alpha_ce, sanh.alpha_mlm, sanh.alpha_cos, sanh.alpha_mse) == (5.0, 2.0, 1.0, 0.0)
    assert sanh == LossWeights.from_config(_compose().distill)  # the default is the paper's recipe


def test_demo_recipe_is_hidden_with_the_numbers_of_its_former_overrides():
    """The demo selects distill=hidden instead of listing alpha overrides; the distill, student and
    corpus settings that key a student are the ones the former ten overrides produced."""
    old = ["distill.alpha_ce=0", "distill.alpha_mlm=0", "distill.alpha_cos=1", "distill.batch_size=16",
           "distill.optimizer.lr=5e-4", "distill.trainer.accumulate_grad_batches=1", "distill.trainer.max_epochs=1",
           "student.freeze_word_embeddings=true", "corpus.max_seq_length=128", "distill.keep_checkpoints=false"]
    demo = _compose().demo
    before = _compose("teacher=me5_small", *old)
    for group in ("distill", "student", "corpus"):
        assert hash_object(OmegaConf.to_container(demo[group])) == hash_object(
            OmegaConf.to_container(before[group])), group
    assert LossWeights.from_config(demo.distill) == LossWeights.from_config(_compose("distill=hidden").distill)


@pytest.fixture(scope="module")
def tiny_models(tiny_teacher_dir):
    torch.manual_seed(0)
    teacher = AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    return teacher, tokenizer


@pytest.mark.parametrize("recipe", sorted(RECIPE_TERMS))
def test_each_recipe_computes_the_losses_it_names(recipe, tiny_models):
    teacher, tokenizer = tiny_models
    weights = LossWeights.from_config(_compose(f"distill={recipe}").distill)
    student = build_student(teacher, StudentSpec(num_layers=2))
    if recipe == "hidden":
        # No logits at all: a head that cannot run proves neither model's MLM head is used.
        def refuse(*args, **kwargs):
            raise AssertionError("the hidden recipe ran an MLM head")

        student.vocab_projector.forward = refuse
        teacher_head = teacher.cls.predictions.decoder.forward
        teacher.cls.predictions.decoder.forward = refuse
    module = DistillationModule(
        student=student, teacher=teacher, token_counts=torch.ones(teacher.config.vocab_size),
        special_token_ids=tokenizer.all_special_ids, mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id, optimizer=torch.optim.AdamW, loss_weights=weights, seed=0,
    )
    ids = torch.from_numpy(np.random.default_rng(0).integers(5, teacher.config.vocab_size, size=(3, 12)))
    try:
        total, terms = module.compute_loss(ids, torch.tensor([12, 10, 7]))
    finally:
        if recipe == "hidden":
            teacher.cls.predictions.decoder.forward = teacher_head
    assert set(terms) == RECIPE_TERMS[recipe]
    alphas = {"ce": weights.alpha_ce, "mlm": weights.alpha_mlm, "cos": weights.alpha_cos, "mse": weights.alpha_mse}
    torch.testing.assert_close(total.detach(), sum(alphas[name] * value for name, value in terms.items()))
    described = loss_terms(weights, "trained")
    assert {name for name, term in described.items() if term["runs"]} == RECIPE_TERMS[recipe]


def test_describe_recipe_says_what_runs_and_why():
    hidden = describe_recipe(LossWeights(alpha_ce=0, alpha_mlm=0, alpha_cos=1), teacher_has_mlm_head=False)
    assert hidden.startswith("losses: cos x1 [")
    assert "off: ce (distill.alpha_ce=0), mlm (distill.alpha_mlm=0), mse (distill.alpha_mse=0)" in hidden
    assert hidden.endswith("teacher has no MLM head")
    fitted = describe_recipe(LossWeights(), teacher_has_mlm_head=False, head_fitted=True)
    assert "ce x5 [soft-target KL at T=2 over every attended token, teacher logits from an MLM head fitted" in fitted
    assert "mlm x2 [" in fitted and "cos x1 [" in fitted and "off: mse (distill.alpha_mse=0)" in fitted
    trained = describe_recipe(LossWeights(restrict_ce_to_mask=True), teacher_has_mlm_head=True)
    assert "over MLM targets only, teacher logits from the teacher's trained MLM head" in trained
    assert loss_terms(LossWeights(), "none")["ce"]["why"].startswith("would run on a random head")


def test_all_zero_weights_name_the_recipes():
    with pytest.raises(ConfigError, match="distill=sanh, distill=hidden"):
        LossWeights(alpha_ce=0, alpha_mlm=0, alpha_cos=0).validate()
