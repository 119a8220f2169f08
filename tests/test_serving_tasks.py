"""task=bundle and task=predict through run(cfg) on the real Hydra config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serving_helpers import assert_same_outputs, train_job, trained_heads, write_task_files
from tiny_models import build_tiny_teacher
from tiny_tasks import write_csv, write_jsonl

import domain_distil.serving.quantize as quantize
import domain_distil.tasks.bundle as bundle_task
import domain_distil.tasks.predict as predict_task
from domain_distil.common.hashing import hash_dir
from domain_distil.conversion.int8 import Int8Settings
from domain_distil.serving.bundle_format import BundleError
from domain_distil.serving.bundle_load import load_bundle
from domain_distil.serving.predictor import Predictor
from domain_distil.serving.quantize import int8_settings, with_recorded_layers

ROWS = [
    {"id": "a", "text": "where is my order please", "lang": "eng"},
    {"id": "b", "text": "hola gracias", "lang": "esp"},
    {"id": "c", "text": "python code java code the"},
    {"id": "d", "text": "refund cancel payment please", "lang": "eng"},
    {"id": "e", "text": "hello thanks", "lang": "esp"},
]


@pytest.fixture()
def jobs(tmp_path_factory, tiny_teacher_dir) -> dict[str, Path]:
    return trained_heads(tmp_path_factory, tiny_teacher_dir)


@pytest.fixture()
def bundle_dir(make_cfg, jobs, tmp_path) -> Path:
    out = tmp_path / "bundle"
    cfg = make_cfg("task=bundle", f"bundle.jobs=[{next(iter(jobs.values())).parent}]", f"bundle.output={out}")
    result = bundle_task.run(cfg)
    assert result["heads"] == ["cc_intent/eng", "cc_intent/esp", "td_tags/eng"]
    return out


def test_bundle_task_finds_jobs_and_infers_encoder(bundle_dir, tiny_teacher_dir) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["encoder"]["source"] == str(tiny_teacher_dir)
    assert manifest["encoder"]["hash"] == hash_dir(tiny_teacher_dir)
    assert not (bundle_dir / "variants.json").exists()  # no check texts given


def test_bundle_task_refuses_jobs_on_two_encoders(make_cfg, jobs, tmp_path) -> None:
    other = build_tiny_teacher(tmp_path / "other", seed=2)
    intent, _ = write_task_files(tmp_path)
    foreign = train_job(tmp_path, "foreign", other, intent, "classify.trainer.max_epochs=1", "lang=esp")
    paths = f"[{jobs['cc_intent/eng']},{foreign}]"
    with pytest.raises(BundleError, match="trained on different encoders"):
        bundle_task.run(make_cfg("task=bundle", f"bundle.jobs={paths}", f"bundle.output={tmp_path / 'b'}"))
    with pytest.raises(BundleError, match="was trained on a different encoder"):
        bundle_task.run(make_cfg("task=bundle", f"bundle.jobs={paths}", f"bundle.output={tmp_path / 'b'}",
                                 f"bundle.encoder={other}"))


def test_int8_config_group_reaches_the_int8_settings(make_cfg) -> None:
    """serve, predict and bundle all read the root `int8` group through `int8_settings`."""
    assert int8_settings(make_cfg("task=serve")) == Int8Settings()
    chosen = int8_settings(make_cfg("task=predict", "int8.method=blockwise", "int8.exclude=[ffn_out]"))
    assert chosen == Int8Settings(method="blockwise", exclude=("ffn_out",)) and chosen.key() != Int8Settings().key()


@pytest.mark.slow
def test_bundle_task_checks_int8_and_onnx(make_cfg, jobs, tmp_path) -> None:
    texts = write_jsonl(tmp_path / "heldout.jsonl", [{"text": r["text"]} for r in ROWS] * 4)
    corpus = tmp_path / "corpus.txt"  # held-out in-domain text for int8.exclude=auto (the default)
    corpus.write_text("my card payment failed\nwhere is the package\nhello there thanks\npython list error\n"
                      "cancel the order please\ndatabase server query\nel reembolso de mi cuenta\n")
    out = tmp_path / "bundle"
    result = bundle_task.run(make_cfg("task=bundle", f"bundle.jobs=[{next(iter(jobs.values())).parent}]",
                                      f"bundle.output={out}", f"bundle.check.texts={texts}",
                                      f"int8.calibration.texts={corpus}"))
    # The manifest records the int8 method and the layers auto chose, measured on the 7 texts ...
    recorded = json.loads((out / "manifest.json").read_text())["int8"]
    assert recorded == result["int8"] and recorded["settings"] == Int8Settings().effective()
    assert recorded["calibration"]["texts"] == 7 and set(recorded["sensitivity"]) >= set(recorded["excluded"])
    assert recorded["excluded"] and all(label.split(".")[1] in ("q", "k", "v", "attn_out", "ffn_in", "ffn_out")
                                        for label in recorded["excluded"])
    # ... and serving reads them back: no calibration texts needed, the same layers excluded.
    bundle = load_bundle(out)
    assert with_recorded_layers(Int8Settings(), bundle.manifest).exclude == tuple(recorded["excluded"])
    report = json.loads((out / "variants.json").read_text())
    assert report["variants"]["int8"]["settings"]["exclude"] == recorded["excluded"]
    assert report["texts"] == 20 and set(report["variants"]) == {"int8", "onnx"}
    for entry in report["variants"].values():
        assert "error" not in entry, entry
        assert set(entry["heads"]) == {"cc_intent/eng", "cc_intent/esp", "td_tags/eng"}
        for head in entry["heads"].values():
            assert head["texts"] == 20 and 0.0 <= head["flip_rate"] <= head["text_flip_rate"] <= 1.0
        assert entry["flip_rate"] == max(h["flip_rate"] for h in entry["heads"].values())
    # ONNX Runtime computes the same function as PyTorch fp32 (up to float rounding).
    assert report["variants"]["onnx"]["flip_rate"] == 0.0
    assert max(h["max_abs_prob_diff"] for h in report["variants"]["onnx"]["heads"].values()) < 1e-4


def _expected(bundle_dir: Path, rows: list[dict]) -> list[list[dict]]:
    predictor = Predictor(load_bundle(bundle_dir))
    return predictor.predict([r["text"] for r in rows], text_langs=[r.get("lang") or None for r in rows])


def test_predict_jsonl(make_cfg, bundle_dir, tmp_path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    result = predict_task.run(make_cfg("task=predict", f"predict.bundle={bundle_dir}", f"predict.input={source}",
                                       "predict.chunk_rows=2"))
    output = Path(result["output"])
    assert output == tmp_path / "output" / "in.predictions.jsonl" and result["rows"] == 5
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3, 4, 5] and [line["id"] for line in lines] == list("abcde")
    assert [line.get("lang") for line in lines] == ["eng", "esp", None, "eng", "esp"]
    # eng rows get the two eng heads, esp rows the esp head, the row without lang every head.
    assert [len(line["predictions"]) for line in lines] == [2, 1, 3, 2, 1]
    assert_same_outputs([line["predictions"] for line in lines], _expected(bundle_dir, ROWS))
    assert not list(output.parent.glob("*.partial*"))


def test_predict_csv_with_filter(make_cfg, bundle_dir, tmp_path) -> None:
    source = write_csv(tmp_path / "in.csv", ROWS)
    out = tmp_path / "preds.jsonl"
    predict_task.run(make_cfg("task=predict", f"predict.bundle={bundle_dir}", f"predict.input={source}",
                              f"predict.output={out}", "predict.tasks=cc_intent", "predict.lang_field=null"))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["line"] for line in lines] == [2, 3, 4, 5, 6]  # CSV: the header is line 1
    expected = Predictor(load_bundle(bundle_dir)).predict([r["text"] for r in ROWS], tasks="cc_intent")
    assert_same_outputs([line["predictions"] for line in lines], expected)


def test_predict_rejects_bad_rows_before_the_model(make_cfg, bundle_dir, tmp_path, monkeypatch) -> None:
    # The bundle is loaded in one place (serving.quantize.predictor_from_config), for predict and serve.
    monkeypatch.setattr(quantize, "load_bundle", lambda *a, **k: pytest.fail("model loaded before validation"))
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"id": "x", "text": "  "}])
    with pytest.raises(predict_task.InputFileError, match=r"bad.jsonl:2: field 'text' must be a non-empty string"):
        predict_task.run(make_cfg("task=predict", f"predict.bundle={bundle_dir}", f"predict.input={bad}"))
    french = write_jsonl(tmp_path / "fr.jsonl", [ROWS[0], ROWS[1], {"text": "bonjour", "lang": "fra"}])
    with pytest.raises(predict_task.InputFileError, match=r"fr.jsonl:3: lang='fra' has no head in the bundle"):
        predict_task.run(make_cfg("task=predict", f"predict.bundle={bundle_dir}", f"predict.input={french}"))


def test_predict_resumes_after_interruption(make_cfg, bundle_dir, tmp_path, monkeypatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "preds.jsonl"
    overrides = ("task=predict", f"predict.bundle={bundle_dir}", f"predict.input={source}", f"predict.output={out}",
                 "predict.chunk_rows=2")
    real, calls = Predictor.predict, []

    def dies_on_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict_task.run(make_cfg(*overrides))
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and len(partial.read_text().splitlines()) == 2
    with open(partial, "a") as handle:  # a torn line, as if killed mid-write
        handle.write('{"line": 3, "predic')
    monkeypatch.setattr(Predictor, "predict", real)
    result = predict_task.run(make_cfg(*overrides))
    assert result["resumed_after"] == 2 and result["encoded_rows"] == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == list("abcde")
    assert_same_outputs([line["predictions"] for line in lines], _expected(bundle_dir, ROWS))
