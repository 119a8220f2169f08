"""Bundles: round trip, refusals (other encoder, fine-tuned encoder, changed files), and the
predictor's outputs against the original ClassifierModule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from serving_helpers import assert_same_outputs, train_job, trained_heads, write_task_files
from tiny_models import build_tiny_teacher
from tiny_tasks import intent_rows
from transformers import AutoModel, AutoTokenizer

from domain_distil.classification.features import pad_batch, tokenize_texts
from domain_distil.classification.metrics import probabilities
from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import hash_dir
from domain_distil.conversion.int8 import Int8Settings
from domain_distil.modeling.heads import SelfAttentionHead
from domain_distil.serving.bundle_build import build_bundle, find_jobs, read_job, select_heads
from domain_distil.serving.bundle_format import BundleError
from domain_distil.serving.bundle_load import load_bundle
from domain_distil.serving.predictor import Predictor, UnknownFilterError
from domain_distil.serving.quantize import compare_backends, with_recorded_layers
from lightning_modules.classifier import ClassifierModule

TEXTS = ["where is my order please", "hello thanks", "python code java code the", "refund cancel payment please"]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, tiny_teacher_dir) -> dict[str, Path]:
    return trained_heads(tmp_path_factory, tiny_teacher_dir)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_teacher_dir, jobs) -> Path:
    heads = [read_job(job) for job in jobs.values()]
    return build_bundle(tiny_teacher_dir, heads, tmp_path_factory.mktemp("b") / "bundle")


def test_round_trip(bundle_dir, jobs, tiny_teacher_dir) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["encoder"]["hash"] == hash_dir(tiny_teacher_dir) == hash_dir(bundle_dir / "encoder")
    assert manifest["encoder"]["copied"] is True and manifest["encoder"]["hidden_size"] == 32
    assert [h["key"] for h in manifest["heads"]] == ["cc_intent/eng", "cc_intent/esp", "td_tags/eng"]
    bundle = load_bundle(bundle_dir)
    assert bundle.tasks == ["cc_intent", "td_tags"] and bundle.langs == ["eng", "esp"]
    for key, job in jobs.items():
        record = json.loads((job / "results.json").read_text())
        spec = bundle.heads[key]
        assert spec.threshold == record["threshold"] and spec.task_type == record["task_type"]
        assert spec.labels == record["config"]["cls_task"]["labels"]
        assert spec.encoder_hash == record["encoder"]["hash"]
        ckpt = next((job / "checkpoints").glob("best-*.ckpt"))
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        for name, value in spec.state_dict.items():
            assert torch.equal(value, state[f"head.{name}"]), name
        assert isinstance(spec.build(), SelfAttentionHead) and not spec.build().training
    assert bundle.heads["td_tags/eng"].labels == ["python", "java", "php"]
    assert bundle.heads["cc_intent/eng"].positive_label == "intentful"


def test_int8_record_round_trips_through_the_bundle(tmp_path, jobs, tiny_teacher_dir) -> None:
    """The int8 method and excluded layers a bundle records are what serving applies."""
    record = {"settings": Int8Settings().effective(), "excluded": ["0.v", "2.ffn_out"],
              "calibration": {"texts": 7, "digest": "0123456789ab"}}
    out = build_bundle(tiny_teacher_dir, [read_job(job) for job in jobs.values()], tmp_path / "bundle", int8=record)
    manifest = load_bundle(out).manifest
    assert manifest["int8"] == record
    assert with_recorded_layers(Int8Settings(), manifest) == Int8Settings(exclude=("0.v", "2.ffn_out"))
    # Other settings than the recorded ones: the record does not apply (auto measures again) ...
    assert with_recorded_layers(Int8Settings(auto_share=0.1), manifest).auto
    # ... and explicit layers stay as given.
    assert with_recorded_layers(Int8Settings(exclude=("ffn_out",)), manifest).exclude == ("ffn_out",)
    # A bundle without a record leaves the settings alone.
    assert with_recorded_layers(Int8Settings(), {}) == Int8Settings()


def test_check_of_auto_int8_without_calibration_texts_is_a_config_error(bundle_dir, tmp_path) -> None:
    """Not a variant reported as unavailable: the configuration is wrong (bundle.check.texts
    without int8.calibration.texts), and the run says how to fix it."""
    pytest.importorskip("onnxruntime")
    with pytest.raises(ConfigError, match="int8.calibration.texts"):
        compare_backends(load_bundle(bundle_dir), TEXTS, ("int8",), workdir=tmp_path, int8=Int8Settings())
    assert not list(tmp_path.iterdir())  # refused before any export


def test_predictions_equal_the_classifier_module(bundle_dir, jobs, tiny_teacher_dir) -> None:
    predictor = Predictor(load_bundle(bundle_dir), batch_size=3)
    outputs = predictor.predict(TEXTS)
    # Each text went through the encoder once for all three heads.
    assert predictor.encoded_rows == len(TEXTS)
    encoder = AutoModel.from_pretrained(tiny_teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    for index, key in enumerate(["cc_intent/eng", "cc_intent/esp", "td_tags/eng"]):
        job = jobs[key]
        record = json.loads((job / "results.json").read_text())
        head = SelfAttentionHead(input_dim=32, num_classes=2 if record["task_type"] == "binary" else 3,
                                 attention_dim=16, num_hops=2, hidden_dim=8)
        module = ClassifierModule.load_from_checkpoint(next((job / "checkpoints").glob("best-*.ckpt")), head=head,
                                                       encoder=encoder, optimizer=torch.optim.AdamW)
        module.eval()
        ids, mask = pad_batch(tokenize_texts(tokenizer, TEXTS, record["config"]["cls_task"]["max_length"]), 0)
        with torch.no_grad():
            expected = probabilities(module({"input_ids": ids, "attention_mask": mask}).logits, record["task_type"])
        for row, text_outputs in enumerate(outputs):
            out = text_outputs[index]
            assert (out["task"], out["lang"]) == tuple(key.split("/"))
            if record["task_type"] == "binary":
                assert out["probability"] == pytest.approx(float(expected[row]), abs=1e-5)
                positive = float(expected[row]) >= record["threshold"]
                assert out["label"] == ("intentful" if positive else "not_intentful")
            else:
                got = torch.tensor(list(out["probabilities"].values()))
                assert torch.allclose(got, expected[row], atol=1e-5)
                assert out["labels"] == [label for label, p in zip(["python", "java", "php"], expected[row].tolist())
                                         if p >= record["threshold"]]


def test_filters_and_per_text_language(bundle_dir) -> None:
    predictor = Predictor(load_bundle(bundle_dir))
    assert predictor.select(langs="esp") == ["cc_intent/esp"]
    assert predictor.select(tasks="td_tags") == ["td_tags/eng"]
    assert predictor.select(langs=["eng"], tasks=["cc_intent"]) == ["cc_intent/eng"]
    with pytest.raises(UnknownFilterError, match=r"unknown language 'fra'; the bundle has \['eng', 'esp'\]"):
        predictor.select(langs="fra")
    with pytest.raises(UnknownFilterError, match="unknown task 'sentiment'"):
        predictor.predict(["hi"], tasks=["sentiment"])
    full = predictor.predict(TEXTS[:2])
    per_text = predictor.predict(TEXTS[:2], text_langs=["esp", None])
    assert [o["lang"] for o in per_text[0]] == ["esp"]
    assert_same_outputs([per_text[0], per_text[1]], [[full[0][1]], full[1]])
    with pytest.raises(ValueError, match="text 1 is empty"):
        predictor.predict(["ok", "  "])


def test_shorter_truncation_limit_reencodes_only_long_texts(bundle_dir) -> None:
    bundle = load_bundle(bundle_dir)
    bundle.heads["cc_intent/esp"].max_length = 5  # [CLS] + 3 tokens + [SEP]
    predictor = Predictor(bundle)
    short, long = "hello thanks", "where is my order please now"
    assert len(bundle.tokenizer(short)["input_ids"]) <= 5 < len(bundle.tokenizer(long)["input_ids"])
    outputs = predictor.predict([short, long], tasks="cc_intent")
    assert predictor.encoded_rows == 3  # short once for both heads, long once per limit
    truncated = bundle.tokenizer.decode(bundle.tokenizer(long, truncation=True, max_length=5)["input_ids"][1:-1])
    alone = Predictor(bundle).predict([truncated], langs="esp")[0][0]
    assert outputs[1][1]["probability"] == pytest.approx(alone["probability"], abs=1e-6)


def test_select_heads_keeps_best_seed(jobs) -> None:
    first, second = read_job(jobs["cc_intent/eng"]), read_job(jobs["cc_intent/eng"])
    second.source["best_val"] = {**second.source["best_val"], "f1": first.source["best_val"]["f1"] + 0.1}
    second.source["job"] = "other"
    assert select_heads([first, second], "best_val")[0] is second
    with pytest.raises(BundleError, match="two jobs for cc_intent/eng"):
        select_heads([first, second], "error")
    assert len(find_jobs([jobs["cc_intent/eng"].parent])) == 3


def test_head_of_another_encoder_is_refused(tmp_path, jobs, tiny_teacher_dir) -> None:
    other = build_tiny_teacher(tmp_path / "other_encoder", seed=1)
    intent, _ = write_task_files(tmp_path)
    foreign = read_job(train_job(tmp_path, "foreign", other, intent, "classify.trainer.max_epochs=1"))
    with pytest.raises(BundleError, match=r"head cc_intent/eng .* was trained on a different encoder: its encoder hash "
                                          rf"{hash_dir(other)[:12]} \({other}\) != the bundle encoder's {hash_dir(tiny_teacher_dir)[:12]}"):
        build_bundle(tiny_teacher_dir, [read_job(jobs["cc_intent/esp"]), foreign], tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()  # nothing written


def test_head_of_finetuned_encoder_is_refused(tmp_path, tiny_teacher_dir) -> None:
    intent, _ = write_task_files(tmp_path)
    tuned = read_job(train_job(tmp_path, "ft", tiny_teacher_dir, intent, "encoder.freeze=false",
                               "classify.trainer.max_epochs=1"))
    with pytest.raises(BundleError, match=r"trained with a fine-tuned encoder \(freeze=false\)"):
        build_bundle(tiny_teacher_dir, [tuned], tmp_path / "bundle")


def test_job_without_checkpoint_and_changed_bundle(tmp_path, bundle_dir, jobs) -> None:
    job = tmp_path / "job"
    shutil.copytree(jobs["cc_intent/eng"], job)
    shutil.rmtree(job / "checkpoints")
    # head.safetensors (written by every classify job) is enough on its own ...
    from_export = read_job(job)
    best = next((jobs["cc_intent/eng"] / "checkpoints").glob("best-*.ckpt"))
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    for name, tensor in from_export.state_dict.items():  # the exported head is the best checkpoint's
        assert torch.equal(tensor, checkpoint[f"head.{name}"]), name
    # ... and without it and without the checkpoint the job cannot be bundled.
    (job / "head.safetensors").unlink()
    with pytest.raises(BundleError, match=r"no best checkpoint .* classify.keep_checkpoint=true"):
        read_job(job)
    changed = tmp_path / "changed"
    shutil.copytree(bundle_dir, changed)
    model = AutoModel.from_pretrained(changed / "encoder")
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.add_(0.01)  # "fine-tuned" after bundling
    model.save_pretrained(changed / "encoder")
    with pytest.raises(BundleError, match="the encoder changed after the bundle was built"):
        load_bundle(changed)
    with pytest.raises(BundleError, match="exists; pass bundle.overwrite=true"):
        build_bundle(changed / "encoder", [read_job(jobs["cc_intent/eng"])], bundle_dir)


def test_referenced_encoder(tmp_path, jobs, tiny_teacher_dir, bundle_dir) -> None:
    out = build_bundle(tiny_teacher_dir, [read_job(jobs["cc_intent/eng"])], tmp_path / "ref", copy_encoder=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"]["path"] == str(tiny_teacher_dir.resolve()) and not (out / "encoder").exists()
    assert (out / "tokenizer" / "tokenizer_config.json").is_file()
    texts = [r["text"] for r in intent_rows(langs=("eng",))[:3]]
    referenced = Predictor(load_bundle(out)).predict(texts)
    assert_same_outputs(referenced, Predictor(load_bundle(bundle_dir)).predict(texts, langs="eng", tasks="cc_intent"))


def test_per_label_thresholds_decide_each_label_on_its_own():
    """A head tuned with cls_task.threshold_mode=per_label serves with one threshold per label."""
    from domain_distil.serving.bundle_format import HeadSpec
    from domain_distil.serving.predictor import head_output

    spec = HeadSpec(task="tags", lang="eng", task_type="multilabel", labels=["net::http", "c++ + stl"],
                    positive_label=None, threshold=[0.3, 0.7], max_length=16, head_config={}, input_dim=4,
                    num_classes=2, encoder_hash="h", state_dict={})
    assert head_output(spec, torch.tensor([0.35, 0.65]))["labels"] == ["net::http"]
    assert head_output(spec, torch.tensor([0.25, 0.75]))["labels"] == ["c++ + stl"]
    spec.threshold = 0.5  # one global threshold still works
    assert head_output(spec, torch.tensor([0.35, 0.65]))["labels"] == ["c++ + stl"]
