"""Your own corpus: token budgets, document separators, drop reports, invalid UTF-8, progress, safe cache."""

import gzip
import io
import logging
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from domain_distil.common.progress import PlainProgress, RichProgress, progress
from domain_distil.corpus.dataset import TokenSequenceDataset
from domain_distil.corpus.reader import CorpusError, discover_files, iter_documents, read_documents
from domain_distil.corpus.shards import ShardSettings, build_corpus, corpus_key

WORDS = "my order refund delivery account password card payment help cancel change track package".split()
MAX_LEN = 32


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir):
    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


def _lines(n_docs: int, base: int, spread: int, shift: int = 0) -> list[str]:
    return [
        " ".join(WORDS[(i + j + shift) % len(WORDS)] for j in range(base + i % spread)) for i in range(n_docs)
    ]


def _write(folder: Path, texts: dict[str, list[str]], separator: str = "\n") -> dict[str, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, lines in texts.items():
        (folder / f"{lang}.txt").write_text(separator.join(lines) + "\n", encoding="utf-8")
    return discover_files(folder)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- token budgets -------------------------------------------------------------------------------


def test_budget_cuts_two_corpora_to_equal_token_counts(tmp_path, tokenizer):
    # Two languages with different text and document lengths (short ones, and ones over one chunk).
    files = _write(tmp_path / "c", {"eng": _lines(400, 8, 30), "esp": _lines(300, 5, 70, shift=3)})
    budget = 3000
    settings = ShardSettings(max_seq_length=MAX_LEN, min_seq_length=12, budget_tokens=budget)
    root = build_corpus(files, tokenizer, tmp_path / "cache", settings)
    stats = TokenSequenceDataset(root).meta["languages"]
    kept = {lang: s["tokens"] for lang, s in stats.items()}
    for s in stats.values():
        assert budget - MAX_LEN < s["tokens"] <= budget  # whole chunks, never over, within one chunk
        assert s["budget_tokens"] == budget and s["budget_reached"] and s["stopped_at"]
    assert abs(kept["eng"] - kept["esp"]) < MAX_LEN  # equal up to one chunk
    # What a budget keeps is the start, in file order, of what the whole corpus gives.
    full = build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN, min_seq_length=12))
    for lang in files:
        cut = (root / lang / "shard-00000.bin").read_bytes()
        assert (full / lang / "shard-00000.bin").read_bytes()[: len(cut)] == cut
        assert len(cut) == 4 * kept[lang]
        full_stats = read_stats(full, lang)
        assert full_stats["tokens"] > 2 * budget and full_stats["budget_tokens"] is None


def read_stats(root: Path, lang: str) -> dict:
    return TokenSequenceDataset(root).meta["languages"][lang]


def test_budget_per_language_mapping_and_cache_key(tmp_path, tokenizer):
    files = _write(tmp_path / "c", {"eng": _lines(200, 8, 30), "esp": _lines(200, 8, 30, shift=5)})
    one_number = ShardSettings(max_seq_length=MAX_LEN, budget_tokens=1000)
    mapping = ShardSettings(max_seq_length=MAX_LEN, budget_tokens={"esp": 1000, "eng": 1000})
    assert corpus_key(files, tokenizer, one_number) == corpus_key(files, tokenizer, mapping)
    other_keys = {
        corpus_key(files, tokenizer, s)
        for s in (
            ShardSettings(max_seq_length=MAX_LEN),
            ShardSettings(max_seq_length=MAX_LEN, budget_tokens=2000),
            ShardSettings(max_seq_length=MAX_LEN, budget_tokens=1000, document_separator="blank_line"),
            ShardSettings(max_seq_length=MAX_LEN, budget_tokens={"eng": 1000}),  # esp: no budget
        )
    }
    assert len(other_keys) == 4 and corpus_key(files, tokenizer, one_number) not in other_keys
    root = build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN, budget_tokens={"eng": 700}))
    assert read_stats(root, "eng")["tokens"] <= 700 and read_stats(root, "esp")["budget_tokens"] is None
    assert read_stats(root, "esp")["tokens"] > 2000


def test_budget_errors_before_any_work(tmp_path, tokenizer):
    files = _write(tmp_path / "c", {"eng": _lines(20, 8, 4)})
    with pytest.raises(CorpusError, match=r"corpus.budget_tokens names \['rus'\].*\['eng'\]"):
        build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(budget_tokens={"eng": 10, "rus": 10}))
    assert not (tmp_path / "cache").exists()
    for bad in (0, -5, 1.5, float("inf"), "lots", True):
        with pytest.raises(CorpusError, match="positive whole number of tokens"):
            ShardSettings(budget_tokens=bad)
    with pytest.raises(CorpusError, match=r"corpus.budget_tokens.eng must be"):
        ShardSettings(budget_tokens={"eng": -1})
    assert ShardSettings(budget_tokens=1e6).budget_tokens == 1_000_000  # YAML 1e6 is a float
    with pytest.raises(CorpusError, match="document_separator must be one of"):
        ShardSettings(document_separator="paragraph")


def test_budget_not_reached_is_a_warning_in_meta(tmp_path, tokenizer, caplog):
    files = _write(tmp_path / "c", {"eng": _lines(20, 12, 5)})
    with caplog.at_level(logging.WARNING):
        root = build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN, budget_tokens=10**6))
    meta = TokenSequenceDataset(root).meta
    assert not meta["languages"]["eng"]["budget_reached"]
    assert any("budget of 1000000 tokens was not reached" in w for w in meta["warnings"])
    assert "was not reached" in caplog.text


def test_hydra_corpus_config_has_the_new_keys(make_cfg):
    cfg = make_cfg("corpus=stackexchange", "corpus.budget_tokens={eng:1000,esp:2000}", "corpus.document_separator=blank_line")
    settings = ShardSettings(
        budget_tokens=cfg.corpus.budget_tokens,
        document_separator=cfg.corpus.document_separator,
        encoding_errors=cfg.corpus.encoding_errors,
    )
    assert settings.budget_tokens == {"eng": 1000, "esp": 2000} and settings.budget_for("jap") is None
    assert make_cfg("corpus=text").corpus.budget_tokens is None
    assert make_cfg("corpus=text").corpus.document_separator == "line"


# --- separators and drop reports -----------------------------------------------------------------


def _paragraph_file(folder: Path, n_docs: int = 60) -> dict[str, list[Path]]:
    """Documents of three paragraphs, one per line, with an empty line between documents."""
    docs = []
    for i in range(n_docs):
        short_a = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(4))
        short_b = " ".join(WORDS[(i + j + 2) % len(WORDS)] for j in range(5))
        longer = " ".join(WORDS[(i + j + 4) % len(WORDS)] for j in range(14))
        docs.append(f"{short_a}\n{short_b}\n{longer}\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eng.txt").write_text("\n".join(docs), encoding="utf-8")
    return discover_files(folder)


def test_paragraph_per_line_file_is_reported_and_blank_line_separator_fixes_it(tmp_path, tokenizer):
    files = _paragraph_file(tmp_path / "c")
    by_line = build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN))
    s = read_stats(by_line, "eng")
    assert (s["documents"], s["empty_lines"]) == (180, 59)
    assert s["documents_without_sequence"] == 120 and s["dropped_short"] == 120 and s["sequences"] == 60
    assert s["bytes"] == files["eng"][0].stat().st_size  # every input byte accounted for
    meta = TokenSequenceDataset(by_line).meta
    assert meta["warnings"] and "corpus.document_separator=blank_line" in meta["warnings"][0]
    # Per document 4 + 2 and 5 + 2 tokens in the two short lines, 14 + 2 in the long one: 60 * 13 of 60 * 29.
    assert (s["documents_too_short"], s["dropped_short_tokens"], s["document_tokens"]) == (120, 780, 1740)
    assert "min_seq_length=12 dropped 120 of 180 lines (66.7%) and 780 of 1740 tokens (44.8%)" in meta["warnings"][0]

    settings = ShardSettings(max_seq_length=MAX_LEN, document_separator="blank_line")
    by_paragraph = build_corpus(files, tokenizer, tmp_path / "cache", settings)
    s = read_stats(by_paragraph, "eng")
    assert (s["documents"], s["documents_without_sequence"], s["dropped_short"]) == (60, 0, 0)
    assert s["warnings"] == [] and s["median_document_tokens"] == 25  # 4 + 5 + 14 words + [CLS]/[SEP]
    first = [text for text, _ in iter_documents(files["eng"][0], separator="blank_line")][0]
    assert first == " ".join(files["eng"][0].read_text().split("\n")[:3])


def test_one_message_per_line_says_what_min_seq_length_dropped(tmp_path, tokenizer, caplog):
    """The held-out chat corpus of issue 21: 47.5% of the lines dropped, and the log called it fine."""
    short = _lines(19, 3, 1)  # 3 words: 5 tokens with [CLS]/[SEP], under min_seq_length=12
    long = _lines(21, 12, 1, shift=3)  # 12 words: 14 tokens
    files = _write(tmp_path / "c", {"eng": [line for pair in zip(long, short) for line in pair] + long[19:]})
    with caplog.at_level("INFO", logger="domain_distil"):
        root = build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN))
    s = read_stats(root, "eng")
    assert (s["documents"], s["documents_too_short"], s["sequences"]) == (40, 19, 21)
    assert (s["dropped_short_tokens"], s["document_tokens"]) == (19 * 5, 19 * 5 + 21 * 14)
    summary = "min_seq_length=12 dropped 19 of 40 lines (47.5%) and 95 of 389 tokens (24.4%)"
    assert len(s["warnings"]) == 1 and s["warnings"][0].startswith(f"eng: {summary}, each under 12 tokens")
    assert "lower corpus.min_seq_length" in s["warnings"][0] and "Fine for chat messages" not in caplog.text
    # The build's summary line says it too, warning or not.
    assert f"Corpus eng: 40 documents -> 21 sequences (294 tokens); {summary}; dropped 19 short" in caplog.text
    # The two fixes of docs/own-data.md: a lower min_seq_length, or one conversation per line
    # (here four short messages: 12 words, 14 tokens).
    kept = build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN, min_seq_length=4))
    assert read_stats(kept, "eng")["sequences"] == 40 and read_stats(kept, "eng")["warnings"] == []
    conversations = [" ".join(short[i : i + 4]) for i in range(0, 16, 4)]
    grouped = build_corpus(_write(tmp_path / "g", {"eng": long + conversations}), tokenizer, tmp_path / "cache",
                           ShardSettings(max_seq_length=MAX_LEN))
    assert (read_stats(grouped, "eng")["sequences"], read_stats(grouped, "eng")["documents_too_short"]) == (25, 0)


def test_read_documents_accounts_for_every_line(tmp_path):
    path = tmp_path / "eng.txt"
    path.write_bytes(b"one two\n\n  \nthree\r\nfour\n\n\nfive")
    docs = list(read_documents(path))
    assert [(text, line) for text, _, line in docs if text] == [("one two", 1), ("three", 4), ("four", 5), ("five", 8)]
    assert sum(n for _, n, _ in docs) == path.stat().st_size and sum(not text for text, _, _ in docs) == 4
    paragraphs = list(read_documents(path, separator="blank_line"))
    assert [(text, line) for text, _, line in paragraphs if text] == [("one two", 1), ("three four", 4), ("five", 8)]
    assert sum(n for _, n, _ in paragraphs) == path.stat().st_size


# --- invalid UTF-8 -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_invalid_utf8_names_the_line_past_the_first_decoder_chunk(tmp_path, suffix):
    lines = [f"line {i} with some ordinary text".encode() for i in range(1, 20001)]
    bad_line = 15_000  # ~500 KB in: far past the 8 KiB chunks a TextIOWrapper decodes ahead
    lines[bad_line - 1] = b"caf\xe9 latin-1 text"
    data = b"\n".join(lines) + b"\n"
    offset = sum(len(line) + 1 for line in lines[: bad_line - 1]) + 3
    path = tmp_path / f"eng{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(CorpusError) as raised:
        list(iter_documents(path))
    message = str(raised.value)
    assert message.startswith(f"{path}:{bad_line}: invalid UTF-8 (byte 0xe9 at byte offset {offset} ")
    assert "Re-encode the file as UTF-8" in message and "corpus.encoding_errors=replace" in message
    texts = [text for text, _ in iter_documents(path, encoding_errors="replace")]
    assert len(texts) == 20000 and texts[bad_line - 1] == "caf\ufffd latin-1 text"


# --- progress --------------------------------------------------------------------------------------


def test_plain_progress_lines_every_interval_with_rate_and_eta():
    lines: list[str] = []
    now = [100.0]
    report = PlainProgress("tokenise eng", lines.append, interval_s=30, clock=lambda: now[0])
    for t, fraction, tokens in [(10, 0.1, 1000), (31, 0.25, 3100), (45, 0.4, 4500), (62, 0.5, 6200)]:
        now[0] = 100.0 + t
        report.update(fraction, tokens=tokens)
    now[0] = 200.0
    report.close()
    assert len(lines) == 3  # at 31 s and 62 s, then the final line
    assert lines[0] == "tokenise eng | 25.0% | 3.10k tokens (100 tokens/s) | ETA 0:01:33"
    assert lines[1] == "tokenise eng | 50.0% | 6.20k tokens (100 tokens/s) | ETA 0:01:02"
    assert lines[2] == "tokenise eng | 6.20k tokens (62 tokens/s) | done in 0:01:40"


def test_progress_is_plain_on_a_non_tty_stream_and_rich_on_a_terminal(caplog):
    bare = logging.getLogger("test.progress.unconfigured")
    bare.propagate = False  # no handler anywhere: lines go straight to the stream
    stream = io.StringIO()
    with progress("tokenise esp", stream=stream, logger=bare) as report:
        assert isinstance(report, PlainProgress)
        report.update(0.5, tokens=10)
    assert stream.getvalue().startswith("tokenise esp | 10 tokens (")
    with caplog.at_level(logging.INFO, logger="domain_distil.progress"), progress("tokenise por", stream=io.StringIO()):
        pass
    assert "tokenise por | done in" in caplog.text

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with progress("tokenise jap", stream=Terminal()) as report:
        assert isinstance(report, RichProgress)


def test_shard_building_logs_plain_progress_when_not_a_terminal(tmp_path, tokenizer, caplog):
    files = _write(tmp_path / "c", {"eng": _lines(50, 8, 30)})
    with caplog.at_level(logging.INFO, logger="domain_distil.progress"):
        build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=MAX_LEN))
    line = next(r.getMessage() for r in caplog.records if r.name == "domain_distil.progress")
    assert line.startswith("tokenise eng | ") and " tokens/s) | " in line and "bytes/s" in line


# --- the shard cache under concurrency and kills ---------------------------------------------------


def _build_in_child(tokenizer_dir: str, corpus_dir: str, cache_dir: str, barrier, results) -> None:
    """One spawned process: wait for the other, then build; reports (folder, languages it tokenised)."""
    from domain_distil.corpus import shards

    built = []
    original = shards._build_language
    shards._build_language = lambda lang, *rest: (built.append(lang), original(lang, *rest))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    files = discover_files(corpus_dir)
    barrier.wait()
    root = shards.build_corpus(files, tokenizer, cache_dir, ShardSettings(max_seq_length=MAX_LEN, budget_tokens=20_000))
    results.put((str(root), len(built)))


@pytest.mark.slow
def test_two_processes_building_the_same_cache_leave_one_valid_entry(tmp_path, tokenizer, tiny_teacher_dir):
    _write(tmp_path / "c", {lang: _lines(1500, 8, 30, shift=k) for k, lang in enumerate(["eng", "esp", "por"])})
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    args = (str(tiny_teacher_dir), str(tmp_path / "c"), str(tmp_path / "shared"), barrier, queue)
    children = [ctx.Process(target=_build_in_child, args=args) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    roots = {root for root, _ in results}
    assert len(roots) == 1 and sum(n for _, n in results) == 3  # one entry; each language tokenised once
    root = Path(roots.pop())
    entries = sorted(p.name for p in root.parent.iterdir())
    assert entries == [root.name]  # no lock file, partial or temp folder left
    alone = build_corpus(
        discover_files(tmp_path / "c"), tokenizer, tmp_path / "alone", ShardSettings(max_seq_length=MAX_LEN, budget_tokens=20_000)
    )
    assert _tree(root) == _tree(alone)  # byte-identical to a single-process build
    assert len(TokenSequenceDataset(root)) > 0


def test_a_failed_build_leaves_no_lock_or_partial_and_the_fixed_corpus_builds(tmp_path, tokenizer):
    """Bad input: fixing it changes the corpus key, so the failed build's partial folder could never
    resume; it goes with its lock file (a KeyboardInterrupt keeps it, see the next test)."""
    files = _write(tmp_path / "c", {lang: _lines(100, 8, 30, shift=k) for k, lang in enumerate(["eng", "esp", "por"])})
    good = files["por"][0].read_bytes()
    files["por"][0].write_bytes(good.replace(b"\n", b"\n\xff", 1))  # 'eng' and 'esp' are built before 'por' fails
    settings = ShardSettings(max_seq_length=MAX_LEN)
    with pytest.raises(CorpusError, match=r"por\.txt:2: invalid UTF-8"):
        build_corpus(files, tokenizer, tmp_path / "cache", settings)
    corpus_dir = tmp_path / "cache" / "corpus"
    assert list(corpus_dir.iterdir()) == []
    files["por"][0].write_bytes(good)
    root = build_corpus(files, tokenizer, tmp_path / "cache", settings)
    assert [p.name for p in corpus_dir.iterdir()] == [root.name]


def test_a_killed_build_resumes_per_language_and_publishes_atomically(tmp_path, tokenizer, monkeypatch):
    files = _write(tmp_path / "c", {lang: _lines(100, 8, 30, shift=k) for k, lang in enumerate(["eng", "esp", "por"])})
    settings = ShardSettings(max_seq_length=MAX_LEN)
    from domain_distil.corpus import shards

    original = shards._tokenise_language

    def dies_on_esp(lang, *rest):
        if lang == "esp":
            raise KeyboardInterrupt("killed")
        return original(lang, *rest)

    monkeypatch.setattr(shards, "_tokenise_language", dies_on_esp)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(files, tokenizer, tmp_path / "cache", settings)
    corpus_dir = tmp_path / "cache" / "corpus"
    (partial,) = corpus_dir.glob(".*.partial")
    root = corpus_dir / partial.name[1 : -len(".partial")]
    assert not root.exists()  # nothing published: readers cannot see a half-built corpus
    assert sorted(p.name for p in partial.iterdir()) == ["eng"]  # the failed language's temp was removed
    (partial / ".por.tmp-999-deadbeef").mkdir()  # what a SIGKILLed builder leaves behind
    eng_mtime = (partial / "eng" / "stats.json").stat().st_mtime_ns
    monkeypatch.setattr(shards, "_tokenise_language", original)
    assert build_corpus(files, tokenizer, tmp_path / "cache", settings) == root
    assert (root / "eng" / "stats.json").stat().st_mtime_ns == eng_mtime  # eng was not rebuilt
    assert sorted(p.name for p in corpus_dir.iterdir()) == [root.name]  # no lock file, no partial
    assert sorted(p.name for p in root.iterdir()) == ["eng", "esp", "meta.json", "por", "token_counts.npy"]
    clean = build_corpus(files, tokenizer, tmp_path / "clean", settings)
    assert _tree(clean) == _tree(root)
    shutil.rmtree(tmp_path / "clean")
    assert np.load(root / "token_counts.npy").sum() == TokenSequenceDataset(root).lengths.sum()
