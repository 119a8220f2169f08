"""Loading a serving bundle for serving: the manifest, the encoder (checked against its hash),
the tokenizer and every head's weights (checked against theirs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from domain_distil.common.hashing import hash_file
from domain_distil.common.io import MANIFEST, read_json
from domain_distil.encoders import encoder_hash, load_encoder
from domain_distil.serving.bundle_format import FORMAT_VERSION, HEAD_META, HEAD_WEIGHTS, BundleError, HeadSpec


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]
    encoder: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    heads: dict[str, HeadSpec]  # key "task/lang" -> spec (weights included)

    @property
    def encoder_hash(self) -> str:
        return str(self.manifest["encoder"]["hash"])

    @property
    def tasks(self) -> list[str]:
        return sorted({h.task for h in self.heads.values()})

    @property
    def langs(self) -> list[str]:
        return sorted({h.lang for h in self.heads.values()})


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST}; not a serving bundle (build one with task=bundle)")
    manifest = read_json(path)
    if manifest.get("kind") != "serving_bundle" or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: kind/format_version {manifest.get('kind')}/{manifest.get('format_version')} "
                          f"is not serving_bundle/{FORMAT_VERSION}")
    for key in ("encoder", "tokenizer", "heads"):
        if key not in manifest:
            raise BundleError(f"{path}: missing field {key!r}")
    return manifest


def load_bundle(root: str | Path, *, verify: bool = True, cache_dir: str | Path | None = None) -> Bundle:
    """Load encoder, tokenizer and heads. ``verify`` re-hashes the encoder folder and every head file,
    so a bundle whose encoder was swapped or fine-tuned since it was built is refused."""
    root = Path(root)
    manifest = read_manifest(root)
    source = manifest["encoder"]
    location = str(root / source["path"]) if source["copied"] else str(source["path"])
    expected, revision = str(source["hash"]), source.get("revision")
    if verify:
        actual = encoder_hash(location, revision, cache_dir)
        if actual != expected:
            raise BundleError(f"{root}: encoder {location} has hash {actual[:12]}, the manifest says {expected[:12]}: "
                              "the encoder changed after the bundle was built; rebuild the bundle")
    heads: dict[str, HeadSpec] = {}
    for entry in manifest["heads"]:
        folder = root / entry["dir"]
        weights = folder / HEAD_WEIGHTS
        if not weights.is_file():
            raise BundleError(f"{root}: head {entry.get('key')} has no {weights}")
        if verify and hash_file(weights) != entry["sha256"]:
            raise BundleError(f"{weights}: content hash differs from the manifest's; the head file changed")
        spec = HeadSpec.from_meta(read_json(folder / HEAD_META), load_file(str(weights)))
        if spec.encoder_hash != expected:
            raise BundleError(f"{folder}: head trained on encoder {spec.encoder_hash[:12]}, bundle encoder is {expected[:12]}")
        heads[spec.key] = spec
    encoder, tokenizer = load_encoder(location, revision=revision, tokenizer_path=root / manifest["tokenizer"])
    encoder.requires_grad_(False)
    return Bundle(root=root, manifest=manifest, encoder=encoder, tokenizer=tokenizer, heads=heads)
