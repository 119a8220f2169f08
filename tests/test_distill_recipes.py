"""Distillation recipes by name (conf/distill/<recipe>.yaml): each runs exactly the losses it names,
keeps every other distill setting, and says which losses ran and why."""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scripts import doc_blocks
from transformers import AutoModelForMaskedLM, AutoTokenizer

from domain_distil.artifacts.students import recipe_hash, recipe_identity
from domain_distil.common.configs import config_dir
from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import hash_object
from domain_distil.modeling.mlm import mlm_body
from domain_distil.modeling.objectives import TERMS, ModelShape, Objective, PairShape, objective_identity
from domain_distil.modeling.objectives import base as objectives_base
from domain_distil.modeling.objectives.base import LossTerm
from domain_distil.modeling.objectives.capture import attention_projections
from domain_distil.modeling.student import StudentSpec, build_student
from lightning_modules.distillation import DistillationModule

RECIPE_TERMS = {"sanh": {"ce", "mlm", "cos"}, "hidden": {"cos"}, "sanh_mse": {"mse", "mlm", "cos"},
                "layerwise": {"layers"}, "minilm": {"minilm"}}
# Recipe hashes (distill + student + teacher-head identity) of today's configs, computed before the
# loss terms moved into `distill.terms`: every student cached since keeps its key.
RECIPE_HASHES_BEFORE_THE_TERMS_MAPPING = {
    "default": "67ddaf704cd254aaf204e2cec52987a5b9c2cd57a7163aabdb41642bd59e3e47",
    "sanh": "67ddaf704cd254aaf204e2cec52987a5b9c2cd57a7163aabdb41642bd59e3e47",
    "hidden": "56d40ae8ba9f37dce708d674bd809a5210335479cf9cbcaf10930276a0211a7f",
    "sanh_mse": "a13ef1fae97f2ad8f1c58629977dae5134a42013c578c4db8a2cabe48d85d4df",
    "demo": "3238b2ac4518462fae4e83ec59875bb47a8c271e7f1f683969df6c78ee25fdaf",
}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _plain(node):
    return OmegaConf.to_container(node, resolve=True)


def _recipe_hash(group) -> str:
    """The recipe hash of a composed config (the root, or the demo section)."""
    return recipe_hash(_plain(group.distill), _plain(group.student),
                       _plain(group.teacher.mlm_head) if "mlm_head" in group.teacher else None)


def test_recipes_keep_the_default_training_settings():
    default = OmegaConf.to_container(_compose().distill)
    for recipe in RECIPE_TERMS:
        chosen = OmegaConf.to_container(_compose(f"distill={recipe}", "distill.batch_size=7").distill)
        assert chosen["batch_size"] == 7
        differing = {k for k in default if default[k] != chosen[k]} - {"batch_size"}
        assert differing <= {"terms"}, (recipe, differing)
        assert chosen["terms"].keys() == default["terms"].keys()
    sanh = Objective.from_config(_compose("distill=sanh").distill)
    assert sanh == Objective.from_config(_compose().distill)  # the default is the paper's
    assert sanh.running == Objective.paper().running and not sanh.restrict_ce_to_mask


def test_existing_students_keep_their_keys():
    """The regression anchor: today's recipes hash as they did before `distill.terms` existed."""
    hashes = {recipe: _recipe_hash(_compose(f"distill={recipe}")) for recipe in ("default", "sanh", "hidden", "sanh_mse")}
    hashes["demo"] = _recipe_hash(_compose("experiment=demo").demo)
    assert hashes == RECIPE_HASHES_BEFORE_THE_TERMS_MAPPING


def test_demo_recipe_is_hidden_with_the_numbers_of_its_former_overrides():
    """The demo selects distill=hidden instead of listing overrides; the distill, student and corpus
    settings that key a student are the ones the former ten overrides produced (the alpha ones now
    written as term weights, integers as they were typed)."""
    old = ["distill.terms.ce.weight=0", "distill.terms.mlm.weight=0", "distill.terms.cos.weight=1",
           "distill.batch_size=16", "distill.optimizer.lr=5e-4", "distill.trainer.accumulate_grad_batches=1",
           "distill.trainer.max_epochs=1", "student.freeze_word_embeddings=true", "corpus.max_seq_length=128",
           "distill.keep_checkpoints=false"]
    demo = _compose("experiment=demo").demo
    # The demo pins fp32 explicitly: distillation elsewhere is bf16 on a CPU with bf16 units.
    before = _compose("teacher=me5_small", *old, "distill.trainer.precision=32-true")
    for group in ("distill", "student", "corpus"):
        assert hash_object(OmegaConf.to_container(demo[group])) == hash_object(
            OmegaConf.to_container(before[group])), group
    assert Objective.from_config(demo.distill) == Objective.from_config(_compose("distill=hidden").distill)


def test_every_registered_term_has_its_entry_in_default_yaml():
    """One class and one YAML entry per term: the names and each term's keys agree."""
    terms = OmegaConf.to_container(_compose().distill.terms)
    assert list(terms) == list(TERMS)
    for name, settings in terms.items():
        assert list(settings) == [f.name for f in dataclasses.fields(TERMS[name])], name
        assert settings["weight"] >= 0


@dataclasses.dataclass(frozen=True)
class _FutureTerm(LossTerm):
    """A term added to the code after students were made (registered by the tests that use it)."""

    name = "future_term"
    weight: float
    margin: float

    def __call__(self, inputs):
        return inputs.student.last_hidden.sum() * 0

    def what(self, logit_rows: str) -> str:
        return "a future term"


def test_a_new_term_off_by_default_changes_no_key(monkeypatch):
    monkeypatch.setitem(TERMS, _FutureTerm.name, _FutureTerm)
    distill = _plain(_compose("distill=hidden").distill)
    student = _plain(_compose().student)
    before = recipe_hash(distill, student)
    with_term_off = {**distill, "terms": {**distill["terms"], "future_term": {"weight": 0.0, "margin": 0.5}}}
    assert recipe_hash(with_term_off, student) == before
    on = {**distill, "terms": {**distill["terms"], "future_term": {"weight": 0.5, "margin": 0.5}}}
    other_setting = {**distill, "terms": {**distill["terms"], "future_term": {"weight": 0.5, "margin": 0.7}}}
    assert len({before, recipe_hash(on, student), recipe_hash(other_setting, student)}) == 3
    assert recipe_identity(on, student)["distill"]["terms"] == {"future_term": {"weight": 0.5, "margin": 0.5}}
    assert Objective.from_config(on).describe("none").startswith("losses: cos x1 [")


def test_turning_on_a_new_term_changes_the_key_and_off_terms_settings_do_not():
    distill = _plain(_compose("distill=hidden").distill)
    student = _plain(_compose().student)
    before = recipe_hash(distill, student)
    minilm_off_other_layer = _plain(_compose("distill=hidden", "distill.terms.minilm.teacher_layer=5").distill)
    assert recipe_hash(minilm_off_other_layer, student) == before
    layerwise = _plain(_compose("distill=layerwise").distill)
    assert objective_identity(layerwise)["terms"] == {"layers": {"weight": 1.0, "metric": "cosine"}}
    layerwise_mse = _plain(_compose("distill=layerwise", "distill.terms.layers.metric=mse").distill)
    assert len({before, recipe_hash(layerwise, student), recipe_hash(layerwise_mse, student)}) == 3


def test_a_manifest_recipe_from_before_the_terms_mapping_reads_as_it_was():
    flat = {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 1, "alpha_mse": 0.0, "temperature": 2.0, "seed": 56}
    assert objective_identity(flat) == flat


def test_bad_terms_are_one_line_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"distill.terms.layer: no such loss term; the terms are ce, mlm, cos"):
        Objective.from_config({"terms": {"layer": {"weight": 1}}})
    with pytest.raises(ConfigError, match=r"distill.terms.layers: unknown \['metrc'\]; this term takes weight, metric"):
        Objective.from_config({"terms": {"layers": {"weight": 1, "metrc": "mse"}}})
    with pytest.raises(ConfigError, match="distill.terms.layers.metric must be one of cosine, mse, got 'l2'"):
        Objective.from_config({"terms": {"layers": {"weight": 1, "metric": "l2"}}})
    with pytest.raises(ConfigError, match="distill.terms.cos.weight must be a number >= 0, got -1"):
        Objective.from_config({"terms": {"cos": {"weight": -1}}})
    with pytest.raises(ConfigError, match="distill.terms.ce.temperature must be > 0"):
        Objective.from_config({"terms": {"ce": {"weight": 1, "temperature": 0}}})


@pytest.fixture(scope="module")
def tiny_models(tiny_teacher_dir):
    torch.manual_seed(0)
    teacher = AutoModelForMaskedLM.from_pretrained(tiny_teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    return teacher, tokenizer


HEADLESS_RECIPES = {"hidden", "layerwise", "minilm"}


@pytest.mark.parametrize("recipe", sorted(RECIPE_TERMS))
def test_each_recipe_computes_the_losses_it_names(recipe, tiny_models):
    """Exactly the named terms, their weighted sum, no MLM head where no term reads logits, hidden
    states only for the layer-wise recipe, and the attention implementation left as it was."""
    teacher, tokenizer = tiny_models
    objective = Objective.from_config(_compose(f"distill={recipe}").distill)
    student = build_student(teacher, StudentSpec(num_layers=2))
    teacher_head = teacher.cls.predictions.decoder.forward
    if recipe in HEADLESS_RECIPES:
        # No logits at all: a head that cannot run proves neither model's MLM head is used.
        def refuse(*args, **kwargs):
            raise AssertionError(f"the {recipe} recipe ran an MLM head")

        student.vocab_projector.forward = refuse
        teacher.cls.predictions.decoder.forward = refuse
    asked: list[bool] = []
    hooks = [mlm_body(model).register_forward_pre_hook(
        lambda module, args, kwargs: asked.append(bool(kwargs.get("output_hidden_states"))), with_kwargs=True)
        for model in (teacher, student)]
    module = DistillationModule(
        student=student, teacher=teacher, token_counts=torch.ones(teacher.config.vocab_size),
        special_token_ids=tokenizer.all_special_ids, mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id, optimizer=torch.optim.AdamW, objective=objective, seed=0,
    )
    ids = torch.from_numpy(np.random.default_rng(0).integers(5, teacher.config.vocab_size, size=(3, 12)))
    try:
        total, terms = module.compute_loss(ids, torch.tensor([12, 10, 7]))
    finally:
        teacher.cls.predictions.decoder.forward = teacher_head
        for hook in hooks:
            hook.remove()
    assert set(terms) == RECIPE_TERMS[recipe]
    weights = {term.name: term.weight for term in objective.terms}
    torch.testing.assert_close(total.detach(), sum(weights[name] * value for name, value in terms.items()))
    described = objective.loss_terms("trained")
    assert {name for name, term in described.items() if term["runs"]} == RECIPE_TERMS[recipe]
    assert asked == [recipe == "layerwise"] * 2
    assert student.config._attn_implementation == teacher.config._attn_implementation == "sdpa"
    for model in (student, teacher):  # the Q/K/V hooks lived for one forward only
        assert not any(p._forward_hooks for layer in (0, 1) for p in attention_projections(model, layer))


def test_describe_says_what_runs_and_why():
    hidden = Objective.from_config(_compose("distill=hidden").distill).describe("none")
    assert hidden.startswith("losses: cos x1 [")
    assert ("off: ce (distill.terms.ce.weight=0), mlm (distill.terms.mlm.weight=0), mse (distill.terms.mse.weight=0), "
            "layers (distill.terms.layers.weight=0), attn (distill.terms.attn.weight=0), minilm "
            "(distill.terms.minilm.weight=0)") in hidden
    assert hidden.endswith("teacher has no MLM head")
    fitted = Objective.paper().describe("fitted")
    assert "ce x5 [soft-target KL at T=2 over every attended token, teacher logits from an MLM head fitted" in fitted
    assert "mlm x2 [" in fitted and "cos x1 [" in fitted and "off: mse (distill.terms.mse.weight=0)" in fitted
    trained = Objective.from_config(_compose("distill.restrict_ce_to_mask=true").distill).describe("trained")
    assert "over MLM targets only, teacher logits from the teacher's trained MLM head" in trained
    assert Objective.paper().loss_terms("none")["ce"]["why"].startswith("would run on a random head")
    layerwise = Objective.from_config(_compose("distill=layerwise", "distill.terms.attn.weight=0.5").distill)
    assert layerwise.describe("none").startswith(
        "losses: layers x1 [1 - cos of every student layer's hidden states (and the embeddings') against the teacher "
        "layer it was copied from, over attended tokens, needs no MLM head]; attn x0.5 [KL(teacher || student) of")


def test_all_zero_weights_name_the_recipes():
    with pytest.raises(ConfigError, match="every loss weight is 0.*distill=sanh, distill=hidden, distill=layerwise"):
        Objective.from_config(_compose("distill=hidden", "distill.terms.cos.weight=0").distill)


def test_the_add_a_term_walkthrough_runs_as_written(monkeypatch, tiny_models):
    blocks = doc_blocks("docs/architecture.md", "Add a loss term")
    python, yaml_block = blocks["python"], blocks["yaml"]
    monkeypatch.setattr(objectives_base, "TERMS", dict(TERMS))  # the example registers into a copy
    module = types.ModuleType("walkthrough")  # dataclasses looks the class's module up in sys.modules
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(python, "docs/architecture.md", "exec"), module.__dict__)
    entry = yaml.safe_load(yaml_block)
    assert entry == {"last_mse": {"weight": 0.0}}
    distill = _plain(_compose().distill)
    student = _plain(_compose().student)
    with_entry = {**distill, "terms": {**distill["terms"], **entry}}
    assert recipe_hash(with_entry, student) == recipe_hash(distill, student)  # no existing key changes
    on = {**distill, "terms": {**distill["terms"], "last_mse": {"weight": 1.0}}}
    objective = Objective.from_config(on)
    assert "last_mse x1 [MSE of the last hidden states over attended tokens" in objective.describe("trained")
    teacher, tokenizer = tiny_models
    distillation = DistillationModule(
        student=build_student(teacher, StudentSpec(num_layers=2)), teacher=teacher,
        token_counts=torch.ones(teacher.config.vocab_size), special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id, optimizer=torch.optim.AdamW,
        objective=objective, seed=0,
    )
    ids = torch.from_numpy(np.random.default_rng(0).integers(5, teacher.config.vocab_size, size=(3, 12)))
    total, terms = distillation.compute_loss(ids, torch.tensor([12, 10, 7]))
    assert set(terms) == {"ce", "mlm", "cos", "last_mse"} and terms["last_mse"] > 0
    torch.testing.assert_close(total.detach(), 5 * terms["ce"] + 2 * terms["mlm"] + terms["cos"] + terms["last_mse"])


def test_an_unknown_setting_of_a_paper_term_is_refused_by_the_key_too():
    """The lookup of encoder=distilled hashes the recipe without planning it: a typo is an error, not a key."""
    distill = _plain(_compose().distill)
    typo = {**distill, "terms": {**distill["terms"], "ce": {"weight": 5.0, "temperature": 2.0, "temprature": 3.0}}}
    with pytest.raises(ConfigError, match="distill.terms.ce.temprature: ce takes only weight, temperature"):
        recipe_hash(typo, {})


def test_layer_wise_terms_refuse_models_they_cannot_pair():
    objective = Objective.from_config(_plain(_compose("distill=layerwise", "distill.terms.attn.weight=1").distill))
    teacher = ModelShape(layers=12, hidden=768, heads=12)
    objective.check(PairShape(ModelShape(6, 768, 12), teacher, (0, 2, 4, 7, 9, 11)))
    with pytest.raises(ConfigError, match=r"distill.terms.layers: the student's layer map \[0, 2, 4\] does not fit a "
                                          "6-layer student of a 12-layer teacher"):
        objective.check(PairShape(ModelShape(6, 768, 12), teacher, (0, 2, 4)))
    with pytest.raises(ConfigError, match="distill.terms.layers compares layers one to one, so the student's hidden "
                                          "size must be the teacher's; got 384 and 768"):
        objective.check(PairShape(ModelShape(6, 384, 12), teacher, (0, 2, 4, 7, 9, 11)))
    with pytest.raises(ConfigError, match="distill.terms.attn .* heads size must be the teacher's; got 6 and 12"):
        objective.check(PairShape(ModelShape(6, 768, 6), teacher, (0, 2, 4, 7, 9, 11)))
