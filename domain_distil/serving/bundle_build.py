"""Building a serving bundle from ``task=classify`` job folders (``task=bundle``). A head is refused
when its encoder hash differs from the bundle's encoder or when its encoder was fine-tuned
(``freeze: false``): it was trained on features this encoder does not produce, and would silently
give wrong answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoTokenizer

from domain_distil.classification.results import RESULTS_FILE
from domain_distil.common.hashing import hash_file
from domain_distil.common.io import MANIFEST, read_json, write_json
from domain_distil.common.provenance import git_commit
from domain_distil.encoders import encoder_hash
from domain_distil.serving.bundle_format import FORMAT_VERSION, HEAD_META, HEAD_WEIGHTS, BundleError, HeadSpec

log = logging.getLogger(__name__)


def find_jobs(paths: Iterable[str | Path]) -> list[Path]:
    """Job folders: each path is a job folder (holds results.json) or a sweep searched recursively."""
    jobs: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if (path / RESULTS_FILE).is_file():
            jobs.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.rglob(RESULTS_FILE))
            if not found:
                raise BundleError(f"{path}: no {RESULTS_FILE} below this folder (expected task=classify job folders)")
            jobs.extend(found)
        else:
            raise BundleError(f"bundle.jobs: {path} is not a folder")
    return list(dict.fromkeys(jobs))


def _head_weights(job: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The head's trained weights: ``head.safetensors`` (written by every classify job), or the
    ``head.*`` entries of a kept best checkpoint for jobs that predate it."""
    exported = job / "head.safetensors"
    if exported.is_file():
        return load_file(str(exported)), exported
    ckpt = _best_checkpoint(job)
    # Our own job output (a Lightning checkpoint with plain hyper-parameters); weights_only=False
    # because Lightning stores non-tensor metadata in it.
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    weights = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
    if not weights:
        raise BundleError(f"{ckpt}: no head.* weights in the checkpoint's state_dict")
    return weights, ckpt


def _best_checkpoint(job: Path) -> Path:
    checkpoints = sorted((job / "checkpoints").glob("best-*.ckpt"))
    if not checkpoints:
        raise BundleError(
            f"{job}: no head.safetensors and no best checkpoint (checkpoints/best-*.ckpt); re-run the job with "
            "classify.save_head=true (the default) or classify.keep_checkpoint=true to bundle its head")
    if len(checkpoints) > 1:
        raise BundleError(f"{job}: several best checkpoints {[c.name for c in checkpoints]}; expected one")
    return checkpoints[0]


def read_job(job: str | Path) -> HeadSpec:
    """The trained head of one ``task=classify`` job folder (results.json + best checkpoint)."""
    job = Path(job)
    where = job / RESULTS_FILE
    record = read_json(where)
    if record.get("status") != "ok":
        raise BundleError(f"{where}: job status is {record.get('status')!r} ({record.get('error')}); only ok jobs can be bundled")
    config = record.get("config") or {}
    cls_task, head_config = config.get("cls_task"), config.get("head")
    if not cls_task or not head_config or "threshold" not in record or "task_type" not in record:
        raise BundleError(f"{where}: lacks config.cls_task, config.head, threshold or task_type (written by an older classify?)")
    weights, ckpt = _head_weights(job)
    try:
        input_dim = int(weights["ws1.weight"].shape[1])
        num_classes = int(weights["classifier.weight"].shape[0])
    except KeyError as error:
        raise BundleError(f"{ckpt}: head weights lack {error}; expected a modeling.heads.SelfAttentionHead") from None
    encoder = record.get("encoder") or {}
    threshold = record["threshold"]  # one, or one per label (cls_task.threshold_mode=per_label)
    return HeadSpec(
        task=str(record["task"]), lang=str(record["lang"]), task_type=str(record["task_type"]),
        # Labels read from the task file (cls_task.labels: null) are recorded in results.json.
        labels=[str(label) for label in (record.get("labels") or cls_task["labels"])],
        positive_label=(record.get("positive_label") or cls_task.get("positive_label")),
        threshold=[float(t) for t in threshold] if isinstance(threshold, list) else float(threshold),
        max_length=int(cls_task.get("max_length", 128)),
        head_config=dict(head_config), input_dim=input_dim, num_classes=num_classes,
        encoder_hash=str(encoder.get("hash")), state_dict=weights,
        source={"job": str(job.resolve()), "checkpoint": ckpt.name, "seed": record.get("seed"),
                "freeze": record.get("freeze"), "encoder": encoder, "best_val": record.get("best_val"),
                "test": record.get("test")},
    )


def select_heads(heads: Sequence[HeadSpec], select: str) -> list[HeadSpec]:
    """One head per (task, lang): ``best_val`` keeps the highest validation F1 (e.g. the best of
    ten seeds), ``error`` refuses duplicates."""
    if select not in ("best_val", "error"):
        raise BundleError(f"bundle.select must be 'best_val' or 'error', got {select!r}")
    chosen: dict[str, HeadSpec] = {}
    for head in heads:
        other = chosen.get(head.key)
        if other is None:
            chosen[head.key] = head
        elif select == "error":
            raise BundleError(f"two jobs for {head.key}: {other.source['job']} and {head.source['job']} "
                              "(bundle.select=best_val keeps the one with the best validation F1)")
        elif head.source["best_val"]["f1"] > other.source["best_val"]["f1"]:
            chosen[head.key] = head
    return [chosen[key] for key in sorted(chosen)]


def check_head(head: HeadSpec, bundle_hash: str, hidden_size: int) -> None:
    """Refuse a head the bundle's encoder cannot serve, with the reason."""
    job = head.source.get("job", "?")
    if head.source.get("freeze") is False:
        raise BundleError(
            f"head {head.key} ({job}) was trained with a fine-tuned encoder (freeze=false): its encoder "
            "weights changed during training, so it cannot share the bundle's frozen encoder")
    if head.encoder_hash != bundle_hash:
        trained_on = head.source.get("encoder", {}).get("name_or_path")
        raise BundleError(
            f"head {head.key} ({job}) was trained on a different encoder: its encoder hash "
            f"{head.encoder_hash[:12]} ({trained_on}) != the bundle encoder's {bundle_hash[:12]}")
    if head.input_dim != hidden_size:
        raise BundleError(f"head {head.key} expects {head.input_dim}-dim features, the encoder gives {hidden_size}")


def build_bundle(encoder: str | Path, heads: Sequence[HeadSpec], output: str | Path, *,
                 copy_encoder: bool = True, revision: str | None = None, overwrite: bool = False,
                 cache_dir: str | Path | None = None, int8: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle of ``encoder`` (a local transformers folder or a hub name) and ``heads``;
    ``int8`` is the record of its int8 variant (``conversion.int8.quantize_int8``), kept in the
    manifest so that serving reuses the choice. Every head is checked before anything is written,
    and the bundle is assembled next to ``output`` and renamed into place: complete or absent."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise BundleError(f"{output} exists; pass bundle.overwrite=true to replace it")
    if not heads:
        raise BundleError("a bundle needs at least one head")
    local = Path(encoder).is_dir()
    if not local and copy_encoder:
        raise BundleError(f"encoder {encoder} is not a local folder: copy_encoder needs one (or set it to false)")
    digest = encoder_hash(str(encoder), revision, cache_dir)
    hidden_size = int(AutoConfig.from_pretrained(str(encoder), revision=revision).hidden_size)
    keys = [head.key for head in heads]
    if len(set(keys)) != len(keys):
        raise BundleError(f"duplicate heads {sorted(k for k in keys if keys.count(k) > 1)}; run select_heads first")
    for head in heads:
        check_head(head, digest, hidden_size)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        if copy_encoder:
            shutil.copytree(encoder, tmp / "encoder")
            encoder_entry = {"path": "encoder", "copied": True}
            tokenizer_path = "encoder"
        else:
            AutoTokenizer.from_pretrained(str(encoder), revision=revision).save_pretrained(tmp / "tokenizer")
            reference = str(Path(encoder).resolve()) if local else str(encoder)
            encoder_entry = {"path": reference, "copied": False}
            tokenizer_path = "tokenizer"
        entries = []
        for head in heads:
            head_dir = f"heads/{head.task}__{head.lang}"
            folder = tmp / head_dir
            folder.mkdir(parents=True)
            save_file({k: v.contiguous() for k, v in head.state_dict.items()}, str(folder / HEAD_WEIGHTS))
            write_json(folder / HEAD_META, head.meta())
            entries.append({"key": head.key, "task": head.task, "lang": head.lang, "task_type": head.task_type,
                            "dir": head_dir, "sha256": hash_file(folder / HEAD_WEIGHTS)})
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": "serving_bundle",
            "encoder": {**encoder_entry, "source": str(encoder), "revision": revision, "hash": digest,
                        "hidden_size": hidden_size},
            "tokenizer": tokenizer_path,
            "heads": entries,
            **({"int8": dict(int8)} if int8 is not None else {}),
            "git": git_commit(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(tmp / MANIFEST, manifest)
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("bundle %s: encoder %s (%s), %d heads: %s", output, encoder, digest[:12], len(heads), ", ".join(keys))
    return output
