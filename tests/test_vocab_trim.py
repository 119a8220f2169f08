"""student.vocab=trim: kept ids, trimmed tokenizers (WordPiece and Unigram), sliced students, the
trimmed objective, and the distillation stage end to end."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from tiny_models import tiny_bert_config, tiny_tokenizer
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertForMaskedLM,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
)

from domain_distil.common.errors import ConfigError
from domain_distil.modeling.masking import MaskingConfig
from domain_distil.modeling.mlm import mlm_head
from domain_distil.modeling.objectives.paper import soft_target_loss
from domain_distil.modeling.student import StudentSpec, build_student
from domain_distil.modeling.tokenizer_trim import trim_tokenizer
from domain_distil.modeling.vocab_trim import (
    KeptVocabularyHead,
    VocabTrimSettings,
    choose_kept_vocabulary,
    count_tokens,
    kept_vocabulary_for,
    trim_masked_lm,
)
from lightning_modules.distillation import DistillationModule

WORDS = ("my order refund delivery account password card payment help cancel change track the quick brown "
         "fox jumps over lazy dog hello python error function").split()
UNSEEN = ["xyzzy", "quixotic", "Zürich", "日本語", "ñandú", "fox-trot", "lazy", "jumps"]


def _texts(seed: int, n: int, words: list[str]) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny SentencePiece-style Unigram tokenizer (XLM-R layout: <s>=0, <pad>=1, </s>=2, <unk>=3), trained here."""
    rng = random.Random(0)
    syllables = "ka ki ku ke ko sa shi su se so ta te to na ni no ma mi mo ra ri ro an in en on th ch".split()
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) for _ in range(500)]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer.train_from_iterator(sentences, trainers.UnigramTrainer(vocab_size=500, special_tokens=specials,
                                                                     unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    fast.sentences, fast.words = sentences, words  # the corpus and its words, for the tests below
    return fast


# ----------------------------------------------------------------------------- kept ids
def test_kept_ids_follow_counts_min_count_specials_and_extra_texts(tmp_path):
    counts = np.array([0, 0, 0, 5, 1, 2, 0, 9])  # ids 0..2 specials never stored
    kept = choose_kept_vocabulary(counts, 2, always_keep=[0, 1, 2], unk_id=1, teacher_vocab_size=10,
                                  extra_counts=np.array([0, 0, 0, 0, 1, 0, 1, 0, 0, 0]))
    assert kept.kept_ids.tolist() == [0, 1, 2, 3, 4, 5, 7]  # 4: 1 + 1 extra; 6: 0 + 1 < 2; 8, 9: unused rows
    assert kept.dropped_token_share == 0.0  # every dropped id had no corpus count
    table = kept.old_to_new()
    assert table.tolist() == [0, 1, 2, 3, 4, 5, 1, 6, 1, 1]  # dropped ids read as the new unk (1)
    assert kept.new_id(7) == 6
    with pytest.raises(KeyError):
        kept.new_id(6)
    strict = choose_kept_vocabulary(counts, 3, [0, 1, 2], 1, 8)
    assert strict.kept_ids.tolist() == [0, 1, 2, 3, 7] and strict.dropped_token_share == pytest.approx(3 / 17)

    tokenizer = tiny_tokenizer()
    (tmp_path / "task.jsonl").write_text(json.dumps({"text": "quixotic fox", "lang": "eng"}) + "\n")
    settings = VocabTrimSettings.from_config({"vocab": "trim", "vocab_min_count": 1,
                                              "vocab_extra_texts": [str(tmp_path / "task.jsonl")]})
    corpus_counts = count_tokens(tokenizer, ["my order"], len(tokenizer))
    kept = kept_vocabulary_for(tokenizer, corpus_counts, settings, len(tokenizer))
    kept_tokens = set(tokenizer.convert_ids_to_tokens(kept.kept_ids.tolist()))
    assert {"my", "order", "fox", "q", "##u", "[MASK]", "[PAD]"} <= kept_tokens and "refund" not in kept_tokens


@pytest.mark.parametrize(("student", "message"), [
    ({"vocab": "small"}, "student.vocab='small'"),
    ({"vocab": "trim", "vocab_min_count": 0}, "vocab_min_count=0"),
    ({"vocab": "trim", "vocab_extra_texts": ["/no/such/file.txt"]}, "no such file /no/such/file.txt"),
    ({"vocab": "full", "vocab_extra_texts": [__file__]}, "student.vocab=full keeps every token"),
])
def test_bad_vocab_settings_name_the_key(student, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        VocabTrimSettings.from_config(student)


# ----------------------------------------------------------------------------- tokenizers
def _check_identity_property(full, trimmed, kept_ids: np.ndarray, texts: list[str]) -> int:
    """Covered text: same pieces, ids through the id map. Other text: kept ids, unk or shorter pieces only."""
    kept = set(kept_ids.tolist())
    new_to_old = kept_ids.tolist()
    # An id means the same piece in both tokenizers: never a silently wrong id.
    assert trimmed.convert_ids_to_tokens(list(range(len(kept_ids)))) == full.convert_ids_to_tokens(new_to_old)
    covered = 0
    for text in texts:
        old, new = full(text)["input_ids"], trimmed(text)["input_ids"]
        assert all(0 <= i < len(kept_ids) for i in new)
        if set(old) <= kept:
            covered += 1
            assert [new_to_old[i] for i in new] == old, text
        elif trimmed.unk_token_id not in new:  # shorter kept pieces spelling the same text
            assert trimmed.decode(new, skip_special_tokens=True) == full.decode(old, skip_special_tokens=True)
    return covered


def test_wordpiece_trim_tokenises_covered_text_identically():
    full = tiny_tokenizer()
    corpus = _texts(1, 200, WORDS) + ["hello wor ld", "Python & java: 42 errors!"]
    kept = kept_vocabulary_for(full, count_tokens(full, corpus, len(full)), VocabTrimSettings("trim"), len(full))
    assert len(kept) < len(full) / 2
    trimmed = trim_tokenizer(full, kept.kept_ids)
    probes = corpus + _texts(2, 200, WORDS + UNSEEN)
    covered = _check_identity_property(full, trimmed, kept.kept_ids, probes)
    assert covered >= len(corpus) and covered < len(probes)  # both branches of the property ran
    assert full.tokenize("ñandú dog")[:2] == ["ñ", "##a"]  # ñ never occurs in the corpus: the word is [UNK]
    assert trimmed.convert_ids_to_tokens(trimmed("ñandú dog")["input_ids"]) == ["[CLS]", "[UNK]", "dog", "[SEP]"]
    assert (trimmed.cls_token_id, trimmed.mask_token_id) == (kept.new_id(full.cls_token_id), kept.new_id(full.mask_token_id))


@pytest.mark.parametrize("min_count", [1, 3])
def test_unigram_trim_tokenises_covered_text_identically(unigram_tokenizer, min_count):
    full = unigram_tokenizer
    corpus = full.sentences[:150]
    kept = kept_vocabulary_for(full, count_tokens(full, corpus, len(full)), VocabTrimSettings("trim", min_count),
                               len(full))
    assert len(kept) < len(full)
    trimmed = trim_tokenizer(full, kept.kept_ids)
    probes = full.sentences[150:] + _texts(3, 200, full.words + ["xq", "zzz", "kaé"])
    covered = _check_identity_property(full, trimmed, kept.kept_ids, probes)
    assert 20 < covered < len(probes)
    # <mask> is the last id of the teacher; its new id is the post-processor's and the tokenizer's.
    assert trimmed("<mask> ka")["input_ids"][1] == kept.new_id(full.mask_token_id) == trimmed.mask_token_id


def test_unigram_trim_keeps_the_unknown_score():
    """Dropping the rarest piece must not make an unknown character cheaper than it was."""
    vocab = [("<unk>", 0.0), ("▁", -1.0), ("▁ab", -20.0), ("cd", -20.0), ("bcd", -1.0), ("a", -100.0)]
    model = Tokenizer(models.Unigram(vocab, unk_id=0))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    full = PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>")
    assert full.tokenize("abcd") == ["▁ab", "cd"]
    trimmed = trim_tokenizer(full, [0, 1, 2, 3, 4])  # "a" dropped: min score -20 without the fix
    assert trimmed.tokenize("abcd") == ["▁ab", "cd"]  # not ["▁", <unk>, "bcd"]
    assert trimmed("a", add_special_tokens=False)["input_ids"] == [1, 0]  # "▁", then unk for the dropped "a"


# ----------------------------------------------------------------------------- models
def _tiny_bert_teacher(seed: int = 0) -> tuple[BertForMaskedLM, PreTrainedTokenizerFast]:
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    return BertForMaskedLM(tiny_bert_config(len(tokenizer), num_hidden_layers=2)).eval(), tokenizer


def _tiny_xlmr_teacher(tokenizer: PreTrainedTokenizerFast) -> XLMRobertaForMaskedLM:
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=130, pad_token_id=1)
    return XLMRobertaForMaskedLM(config).eval()


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_trimmed_student_export_reloads_with_identical_hidden_states(kind, unigram_tokenizer, tmp_path):
    if kind == "bert":
        teacher, tokenizer = _tiny_bert_teacher()
        corpus = _texts(4, 60, WORDS)
    else:
        tokenizer = unigram_tokenizer
        teacher, corpus = _tiny_xlmr_teacher(tokenizer), tokenizer.sentences[:100]
    spec = StudentSpec(num_layers=1, dropout=0.0, attention_dropout=0.0)
    full_student = build_student(teacher, spec).eval()
    counts = count_tokens(tokenizer, corpus, len(tokenizer))
    kept = kept_vocabulary_for(tokenizer, counts, VocabTrimSettings("trim"), teacher.config.vocab_size)
    student = trim_masked_lm(build_student(teacher, spec), kept)
    trimmed_tokenizer = trim_tokenizer(tokenizer, kept.kept_ids)
    assert student.config.vocab_size == len(kept) < teacher.config.vocab_size
    assert student.get_input_embeddings().weight.data_ptr() == student.get_output_embeddings().weight.data_ptr()
    assert not student.base_model.embeddings.position_embeddings.weight.requires_grad  # frozen as before
    student.save_pretrained(tmp_path)
    trimmed_tokenizer.save_pretrained(tmp_path)
    reloaded, reloaded_tokenizer = AutoModel.from_pretrained(tmp_path).eval(), AutoTokenizer.from_pretrained(tmp_path)
    batch_full = tokenizer(corpus[:8], padding=True, return_tensors="pt")
    batch_trim = reloaded_tokenizer(corpus[:8], padding=True, return_tensors="pt")
    assert torch.equal(torch.from_numpy(kept.kept_ids)[batch_trim["input_ids"]], batch_full["input_ids"])
    with torch.no_grad():
        expected = full_student.base_model(input_ids=batch_full["input_ids"],
                                           attention_mask=batch_full["attention_mask"])[0]
        got = reloaded(input_ids=batch_trim["input_ids"], attention_mask=batch_trim["attention_mask"])[0]
        logits = mlm_head(student)(got[0])
        assert torch.allclose(logits, mlm_head(full_student)(expected[0])[:, torch.from_numpy(kept.kept_ids)],
                              atol=1e-5)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["bert", "distilbert", "xlmr"])
def test_kept_vocabulary_head_equals_the_full_logits_gathered(kind, unigram_tokenizer):
    teacher, _ = _tiny_bert_teacher()
    if kind == "distilbert":
        teacher = build_student(teacher, StudentSpec(num_layers=1))
    elif kind == "xlmr":
        teacher = _tiny_xlmr_teacher(unigram_tokenizer)
    kept_ids = torch.tensor([0, 1, 2, 3, 4, 10, 57, 200, teacher.config.vocab_size - 1])
    hidden = torch.randn(7, teacher.config.hidden_size if kind != "distilbert" else teacher.config.dim)
    with torch.no_grad():
        expected = mlm_head(teacher)(hidden).index_select(-1, kept_ids)
        assert torch.allclose(KeptVocabularyHead(teacher, kept_ids)(hidden), expected, atol=1e-6)


def test_soft_target_on_kept_ids_is_the_kl_of_the_renormalised_distributions():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 50), torch.randn(6, 50)
    kept = torch.tensor([0, 3, 4, 9, 20, 33, 49])
    trimmed = soft_target_loss(student[:, kept], teacher[:, kept], temperature=2.0)
    p_t = torch.softmax(teacher / 2, -1)[:, kept]
    p_s = torch.softmax(student / 2, -1)[:, kept]
    p_t, p_s = p_t / p_t.sum(-1, keepdim=True), p_s / p_s.sum(-1, keepdim=True)
    renormalised_kl = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * 4
    assert trimmed.item() == pytest.approx(renormalised_kl.item(), rel=1e-5)


def _module(student, teacher, counts, tokenizer, masking, kept=None) -> DistillationModule:
    return DistillationModule(
        student=student, teacher=teacher, token_counts=torch.as_tensor(counts), special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        optimizer=lambda params: torch.optim.AdamW(params), masking=masking, seed=3,
        kept_vocabulary=kept,
    )


def test_trimmed_objective_equals_the_untrimmed_one_on_a_kept_batch():
    """ce, mlm, cos and the total agree within 1e-5 when the dropped ids carry no probability mass.

    The teacher's decoder bias is -1e4 on dropped ids (so both the teacher and the student built
    from it give them ~0 mass); masking uses no random replacement, whose ids are drawn from
    different ranges (all ids vs kept ids).
    """
    teacher, tokenizer = _tiny_bert_teacher()
    corpus = _texts(5, 40, WORDS)
    counts = count_tokens(tokenizer, corpus, len(tokenizer))
    kept = kept_vocabulary_for(tokenizer, counts, VocabTrimSettings("trim"), len(tokenizer))
    dropped = torch.ones(len(tokenizer), dtype=torch.bool)
    dropped[torch.from_numpy(kept.kept_ids)] = False
    with torch.no_grad():
        teacher.cls.predictions.bias[dropped] = -1e4
        teacher.bert.embeddings.word_embeddings.weight.mul_(30)  # peaked logits (the decoder is tied)
    spec = StudentSpec(num_layers=1, dropout=0.0, attention_dropout=0.0)
    full_student = build_student(teacher, spec)
    with torch.no_grad():  # a student whose predictions differ from the teacher's
        full_student.vocab_transform.weight.add_(torch.randn(full_student.vocab_transform.weight.shape) * 0.5)
    masking = MaskingConfig(word_mask=0.9, word_keep=0.1, word_rand=0.0)
    full = _module(full_student, teacher, counts, tokenizer, masking)
    trimmed = _module(trim_masked_lm(full_student, kept), teacher, counts, tokenizer, masking, kept)
    batch = tokenizer(corpus[:6], padding=True, return_tensors="pt")
    ids, lengths = batch["input_ids"], batch["attention_mask"].sum(-1)
    total_full, terms_full = full.compute_loss(ids, lengths)
    total_trim, terms_trim = trimmed.compute_loss(ids, lengths)
    assert set(terms_full) == set(terms_trim) == {"ce", "mlm", "cos"} and terms_full["ce"] > 0.01
    for name in terms_full:
        assert terms_trim[name].item() == pytest.approx(terms_full[name].item(), abs=1e-5), name
    assert total_trim.item() == pytest.approx(total_full.item(), abs=1e-5)
    total_trim.backward()  # gradients reach the sliced rows
    assert trimmed.student.get_input_embeddings().weight.grad.abs().sum() > 0


def test_dropped_tokens_reach_the_student_as_unk_and_never_as_targets():
    teacher, tokenizer = _tiny_bert_teacher()
    corpus = ["my order refund my order", "my order delivery my order card"]
    counts = count_tokens(tokenizer, corpus, len(tokenizer))
    kept = kept_vocabulary_for(tokenizer, counts, VocabTrimSettings("trim", min_count=2), len(tokenizer))
    assert kept.dropped_token_share > 0  # refund, delivery, card occur once
    student = trim_masked_lm(build_student(teacher, StudentSpec(num_layers=1)), kept)
    module = _module(student, teacher, counts, tokenizer, MaskingConfig(), kept)
    seen: dict[str, torch.Tensor] = {}
    student.distilbert.register_forward_pre_hook(lambda m, a, kw: seen.update(student=kw["input_ids"]), with_kwargs=True)
    teacher.bert.register_forward_pre_hook(lambda m, a, kw: seen.update(teacher=kw["input_ids"]), with_kwargs=True)
    batch = tokenizer(corpus, padding=True, return_tensors="pt")
    for _ in range(5):
        module.compute_loss(batch["input_ids"], batch["attention_mask"].sum(-1))
        unchanged = torch.from_numpy(kept.kept_ids)[seen["student"]] == batch["input_ids"]
        refund = batch["input_ids"] == tokenizer.convert_tokens_to_ids("refund")
        # The teacher reads the stored id, the student reads unk, and a dropped token is never masked.
        assert torch.equal(seen["teacher"][refund], batch["input_ids"][refund])
        assert (seen["student"][refund] == kept.new_id(tokenizer.unk_token_id)).all()
        assert torch.equal(seen["teacher"][unchanged], batch["input_ids"][unchanged])
        changed = ~unchanged & ~refund & ~(batch["input_ids"] == tokenizer.convert_tokens_to_ids("delivery")) & ~(
            batch["input_ids"] == tokenizer.convert_tokens_to_ids("card"))
        assert torch.equal(seen["teacher"][changed], torch.from_numpy(kept.kept_ids)[seen["student"][changed]])


# ----------------------------------------------------------------------------- the stage
def test_distil_with_a_trimmed_vocabulary_exports_a_reloadable_student(make_cfg, tiny_teacher_dir, tmp_path):
    from domain_distil.stages.distil import plan_from_config
    from domain_distil.tasks.distill import ensure_student

    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "eng.txt").write_text("\n".join(_texts(6, 60, WORDS[:14])) + "\n")
    overrides = [f"teacher.name_or_path={tiny_teacher_dir}", f"corpus.dir={folder}", "student.num_layers=1",
                 "logger=none", "distill.batch_size=8", "distill.trainer.max_epochs=1",
                 "trainer.enable_progress_bar=false", "student.vocab=trim"]
    with pytest.raises(ConfigError, match="vocab_min_count"):
        plan_from_config(make_cfg(*overrides, "student.vocab_min_count=0"))
    path = ensure_student(make_cfg(*overrides)).path
    manifest = json.loads((path / "manifest.json").read_text())
    teacher_tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    assert manifest["vocab"]["mode"] == "trim" and manifest["vocab"]["size"] < len(teacher_tokenizer)
    assert manifest["identity"]["vocab"] == manifest["vocab"]["digest"]
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    assert len(tokenizer) == model.config.vocab_size == manifest["vocab"]["size"]
    text = "my order refund delivery"
    assert tokenizer.tokenize(text) == teacher_tokenizer.tokenize(text)
    assert model(**tokenizer(text, return_tensors="pt")).last_hidden_state.shape == (1, 6, 32)
