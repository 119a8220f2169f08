"""Corpus fit (task=corpus_fit) and task-aware selection (stages.select_corpus) on small demo data.

The tokenizer is a WordPiece trained here on equal parts of the demo's in-domain and general
corpora, so it favours neither candidate (no 470 MB teacher conversion in a unit test); the
statistics are tokenizer-agnostic, and docs/corpus-selection.md shows the same ranking with me5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_bert_config
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertModel, PreTrainedTokenizerFast

from domain_distil.analysis.corpus_fit import TokenProfile, coverage, js_divergence, rank_rows
from domain_distil.analysis.corpus_fit_report import Candidate, FitSettings, fit_report
from domain_distil.corpus.reader import discover_files
from domain_distil.demo.data.generator import generate_demo_data
from domain_distil.stages import select_corpus as select_module
from domain_distil.stages.select_corpus import (
    EmbeddingScorer,
    PoolTokens,
    RandomScorer,
    StaticEmbeddingScorer,
    TokenScorer,
    choose,
    read_selection,
    select_corpus,
)

LANGS = ["eng", "esp"]
TASKS = ["cc_intent", "td_tags"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    generate_demo_data(out, 0, languages=LANGS, corpus_mb_per_lang=0.02, general_mb_per_lang=0.02,
                       n_train=120, n_val=10, n_test=10)
    return out


@pytest.fixture(scope="module")
def encoder_dir(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A neutral WordPiece tokenizer (trained on both corpora alike) and a tiny random BERT body."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train([str(demo / kind / f"{lang}.txt") for kind in ("in_domain", "general") for lang in LANGS], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    out = tmp_path_factory.mktemp("neutral_encoder")
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(fast)), add_pooling_layer=False).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(encoder_dir: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(encoder_dir)


def train_texts(demo: Path, task: str, lang: str) -> list[str]:
    rows = [json.loads(line) for line in (demo / "tasks" / f"{task}.jsonl").read_text().splitlines()]
    return [r["text"] for r in rows if r["lang"] == lang and r["split"] == "train"]


def candidates(demo: Path) -> list[Candidate]:
    return [Candidate("general", discover_files(demo / "general")), Candidate("in_domain", discover_files(demo / "in_domain"))]


def test_in_domain_corpus_ranks_above_general_for_both_demo_tasks(demo, tokenizer):
    texts = {task: {lang: train_texts(demo, task, lang) for lang in LANGS} for task in TASKS}
    rows = rank_rows(fit_report(candidates(demo), texts, tokenizer, FitSettings()), "coverage_mass")
    assert len(rows) == len(TASKS) * len(LANGS) * 2
    for task in TASKS:
        for lang in LANGS:
            by_id = {r.candidate: r for r in rows if r.task == task and r.lang == lang}
            assert by_id["in_domain"].rank == 1 and by_id["general"].rank == 2, (task, lang)
            fit, other = by_id["in_domain"].figures, by_id["general"].figures
            assert fit["coverage_mass"] > other["coverage_mass"] + 0.2
            assert fit["coverage_type"] > other["coverage_type"]
            assert fit["js_divergence"] < other["js_divergence"]
            assert 0 < fit["median_doc_tokens"] and fit["read_bytes"] > 0 and fit["truncated"] == 0.0


def test_coverage_and_divergence_on_hand_made_counts():
    task = TokenProfile(counts=np.array([0, 6, 3, 1]), lengths=np.array([10]), unk_id=0)
    corpus = TokenProfile(counts=np.array([5, 2, 0, 8]), lengths=np.array([5, 10]), unk_id=0)
    by_mass, by_type = coverage(task, corpus)
    assert by_mass == pytest.approx(7 / 10) and by_type == pytest.approx(2 / 3)
    assert js_divergence(task, task) == pytest.approx(0.0, abs=1e-12)
    assert 0 < js_divergence(task, corpus) <= 1
    assert corpus.unk_share == pytest.approx(5 / 15)


def test_task_corpus_fit_writes_a_ranked_report_with_embeddings(demo, encoder_dir, make_cfg, capsys):
    cfg = make_cfg(
        "task=corpus_fit", "cls_task=td_tags", f"cls_task.files=[{demo}/tasks/td_tags.jsonl]", "logger=none",
        "cls_task.languages=[eng,esp]", "corpus_fit.languages=[eng]", f"teacher.name_or_path={encoder_dir}",
        f"corpus_fit.candidates={{general: {demo}/general, in_domain: {demo}/in_domain}}",
        "corpus_fit.sample_documents=32", "corpus_fit.sample_task_texts=32",
    )
    from domain_distil.tasks.corpus_fit import run

    rows = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert {p.name for p in out.iterdir()} >= {"corpus_fit.csv", "corpus_fit.md", "corpus_fit.png"}
    best = next(r for r in rows if r.rank == 1)
    assert best.candidate == "in_domain"
    for row in rows:
        assert {"centroid_cosine", "mmd2", "knn_distance"} <= set(row.figures)
        assert row.figures["embedded_documents"] == 32
    assert "| td_tags | eng | 1 | in_domain |" in capsys.readouterr().out


def mixed_pool(demo: Path, lang: str = "eng") -> dict[str, list[Path]]:
    return {lang: [demo / "in_domain" / f"{lang}.txt", demo / "general" / f"{lang}.txt"]}


def in_domain_share(folder: Path, demo: Path, lang: str = "eng") -> float:
    origins = json.loads((folder / "selected_lines.json").read_text())[lang]
    return sum(o.startswith(str(demo / "in_domain")) for o in origins) / len(origins)


def test_token_selection_prefers_in_domain_respects_budget_and_is_deterministic(demo, tokenizer, tmp_path):
    texts = {"eng": train_texts(demo, "td_tags", "eng") + train_texts(demo, "cc_intent", "eng")}
    budget = 2000
    first = select_corpus(mixed_pool(demo), texts, budget, TokenScorer(tokenizer), tokenizer, tmp_path / "a")
    second = select_corpus(mixed_pool(demo), texts, budget, TokenScorer(tokenizer), tokenizer, tmp_path / "b")
    assert first.name == second.name and (first / "eng.txt").read_bytes() == (second / "eng.txt").read_bytes()
    record = read_selection(first)
    stats = record["languages"]["eng"]
    longest = max(len(tokenizer(line, add_special_tokens=False)["input_ids"])
                  for line in (first / "eng.txt").read_text().splitlines())
    assert budget <= stats["tokens_selected"] < budget + longest  # over by less than one document
    assert record["method"] == "tokens" and record["pool"]["files"]["eng"][0]["sha256"]
    assert in_domain_share(first, demo) > 0.9
    random_folder = select_corpus(mixed_pool(demo), texts, budget, RandomScorer(0), tokenizer, tmp_path / "a")
    assert random_folder != first and in_domain_share(random_folder, demo) < 0.8
    assert discover_files(first) == {"eng": [first / "eng.txt"]}  # an ordinary corpus folder


def test_selection_is_cached_by_content(demo, tokenizer, tmp_path, monkeypatch):
    texts = {"eng": train_texts(demo, "cc_intent", "eng")}
    folder = select_corpus(mixed_pool(demo), texts, 1500, TokenScorer(tokenizer), tokenizer, tmp_path)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a cached selection was rebuilt")

    monkeypatch.setattr(select_module, "tokenise_pool", no_rebuild)
    assert select_corpus(mixed_pool(demo), texts, 1500, TokenScorer(tokenizer), tokenizer, tmp_path) == folder
    with pytest.raises(AssertionError, match="rebuilt"):  # another budget is another entry
        select_corpus(mixed_pool(demo), texts, 1600, TokenScorer(tokenizer), tokenizer, tmp_path)


def test_embedding_selection_is_deterministic_and_within_budget(demo, encoder_dir, tokenizer, tmp_path):
    from domain_distil.encoders import load_encoder

    model, enc_tok = load_encoder(encoder_dir)
    scorer = EmbeddingScorer(model, enc_tok, "tiny", k=3, max_length=64)
    texts = {"eng": train_texts(demo, "td_tags", "eng")}
    folder = select_corpus(mixed_pool(demo), texts, 1500, scorer, tokenizer, tmp_path / "a")
    again = select_corpus(mixed_pool(demo), texts, 1500, scorer, tokenizer, tmp_path / "b")
    assert (folder / "eng.txt").read_bytes() == (again / "eng.txt").read_bytes()
    stats = read_selection(folder)["languages"]["eng"]
    assert 1500 <= stats["tokens_selected"] and stats["mean_score_selected"] >= stats["mean_score_pool"]


def test_static_scores_are_the_knn_cosines_of_mean_input_vectors_in_any_chunking(tokenizer):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(len(tokenizer), 8, generator=generator)
    documents = [[5, 6, 7], [], [9], [5, 5, 30, 31], [40, 41, 42, 43, 44], [7, 9]]
    pool = PoolTokens(ids=np.array([i for d in documents for i in d], dtype=np.int32),
                      offsets=np.cumsum([0] + [len(d) for d in documents]), origins=[f"f:{i}" for i in range(6)])
    task_texts = ["the server", "a disk error", "login fails"]
    task_vectors = torch.stack([table[tokenizer(t, add_special_tokens=False)["input_ids"]].mean(0) for t in task_texts])
    expected = []
    for ids in documents:
        if not ids:
            expected.append(-np.inf)
            continue
        sims = torch.nn.functional.cosine_similarity(table[ids].mean(0, keepdim=True), task_vectors)
        expected.append(float(sims.topk(2).values.mean()))
    for chunk in (1, 4, 65_536):
        scorer = StaticEmbeddingScorer(table, tokenizer, "random table", k=2, documents_per_chunk=chunk)
        np.testing.assert_allclose(scorer.score("eng", task_texts, pool, [], "text"), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(select_module.SelectionError, match="embedding table has shape"):
        StaticEmbeddingScorer(table[:10], tokenizer, "too small")
    with pytest.raises(select_module.SelectionError, match="no eng task text has a token"):
        scorer.score("eng", ["", "   "], pool, [], "text")


def test_static_selection_prefers_in_domain_within_budget(demo, encoder_dir, tokenizer, tmp_path):
    from domain_distil.encoders import load_encoder

    model, _ = load_encoder(encoder_dir)
    scorer = StaticEmbeddingScorer(model.get_input_embeddings().weight, tokenizer, "tiny", k=5)
    texts = {"eng": train_texts(demo, "td_tags", "eng") + train_texts(demo, "cc_intent", "eng")}
    folder = select_corpus(mixed_pool(demo), texts, 2000, scorer, tokenizer, tmp_path)
    record = read_selection(folder)
    assert record["method"] == "static" and 2000 <= record["languages"]["eng"]["tokens_selected"]
    assert in_domain_share(folder, demo) > 0.9  # a random table still projects the bag of words
    from omegaconf import OmegaConf

    from domain_distil.tasks.select_corpus import scorer_from_config

    node = OmegaConf.load(Path(__file__).parents[1] / "conf" / "select_corpus" / "default.yaml")
    node.method = "static"
    configured = scorer_from_config(node, str(encoder_dir), tokenizer, str(tmp_path), True)
    assert isinstance(configured, StaticEmbeddingScorer) and configured.k == node.k
    torch.testing.assert_close(configured.table, model.get_input_embeddings().weight.detach())


def test_choose_takes_best_scores_until_the_budget_and_breaks_ties_by_position():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9])
    lengths = np.array([10, 10, 10, 10, 10])
    assert choose(scores, lengths, 20).tolist() == [1, 4]
    assert choose(scores, lengths, 21).tolist() == [0, 1, 4]  # the third document crosses the budget
    assert choose(scores, lengths, 1000).tolist() == [0, 1, 2, 3, 4]


def test_budget_larger_than_the_pool_is_a_user_error(demo, tokenizer, tmp_path):
    from domain_distil.common.errors import UserInputError

    with pytest.raises(UserInputError, match="budget"):
        select_corpus(mixed_pool(demo), {"eng": ["some text"]}, 10**9, RandomScorer(0), tokenizer, tmp_path)
