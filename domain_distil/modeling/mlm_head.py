"""BERT's masked-LM head on an encoder released without one (e5, MiniLM): attach a freshly
initialised head to the body, and score a model over the full vocabulary. Fitting it, with the
body frozen, is a stage: ``domain_distil.stages.teacher_head.fit_mlm_head``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, BertForMaskedLM

from domain_distil.modeling.teachers import quiet_load_report

HEAD_PREFIX = "cls."  # parameter names of the head; everything else is the (frozen) body


def load_with_fresh_head(model_dir: Path, seed: int) -> BertForMaskedLM:
    """``model_dir``'s BERT body with a new MLM head, seeded locally, decoder tied, bias zero."""
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "bert":
        raise ValueError(
            f"{model_dir}: fit_mlm_head supports BERT encoders (model_type 'bert'), got {config.model_type!r}"
        )
    config.tie_word_embeddings = True
    config.architectures = ["BertForMaskedLM"]
    # the head is initialised by from_pretrained (N(0, 0.02), LayerNorm 1/0): seed it, locally;
    # the missing head is expected, so transformers' load report about it stays out of the console
    with quiet_load_report(), torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForMaskedLM.from_pretrained(model_dir, config=config)
    with torch.no_grad():
        model.cls.predictions.bias.zero_()
    return model


def full_vocab_loss(model: BertForMaskedLM, ids: torch.Tensor, labels: torch.Tensor, pad_id: int) -> float:
    """Masked-LM cross-entropy over the whole vocabulary (targets: ``labels`` != -100)."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits
        return nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1)).item()
