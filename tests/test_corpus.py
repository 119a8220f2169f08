"""Corpus reading and tokenisation into int32 shards: formats, chunking, filtering, caching."""

import gzip
import json
import shutil

import numpy as np
import pytest
from transformers import AutoTokenizer

from domain_distil.corpus.dataset import TokenSequenceDataset
from domain_distil.corpus.reader import CorpusError, discover_files, iter_documents
from domain_distil.corpus.shards import ShardSettings, build_corpus, split_and_filter

CLS, SEP, UNK = 2, 3, 1


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir):
    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


def _write_corpus(root, n_docs=40):
    root.mkdir(parents=True, exist_ok=True)
    words = "my order refund delivery account password card payment help cancel change".split()
    lines = [" ".join(words[(i + j) % len(words)] for j in range(8 + i % 30)) for i in range(n_docs)]
    (root / "eng.txt").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    with gzip.open(root / "esp.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(f"mi pedido {line}" for line in lines) + "\n")
    (root / "por.jsonl").write_text(
        "".join(json.dumps({"text": f"meu pedido\n{line}"}) + "\n" for line in lines)
    )
    return lines


def test_discover_and_read_all_formats(tmp_path):
    lines = _write_corpus(tmp_path / "c")
    files = discover_files(tmp_path / "c")
    assert sorted(files) == ["eng", "esp", "por"]
    docs = [text for text, _ in iter_documents(files["por"][0])]
    assert len(docs) == len(lines) and docs[0] == f"meu pedido {lines[0]}"  # inner newline -> space
    assert [t for t, _ in iter_documents(files["esp"][0])][1] == f"mi pedido {lines[1]}"
    assert len(list(iter_documents(files["eng"][0]))) == len(lines)  # blank lines skipped


def test_bad_inputs_name_the_file_and_line(tmp_path):
    bad = tmp_path / "eng.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken}\n')
    with pytest.raises(CorpusError, match=r"eng\.jsonl:2: invalid JSON"):
        list(iter_documents(bad))
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(CorpusError, match=r"eng\.jsonl:2: expected an object with a string field 'text'"):
        list(iter_documents(bad))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CorpusError, match="corpus is empty"):
        discover_files(tmp_path / "empty_dir")
    with pytest.raises(CorpusError, match="asks for \\['rus'\\]"):
        discover_files(tmp_path, languages=["rus"])


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "eng.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("line\n" * 5000)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(CorpusError, match="truncated or corrupt gzip"):
        list(iter_documents(path))


def test_split_long_sequences_and_filter():
    settings = ShardSettings(max_seq_length=10, min_seq_length=4, max_unk_ratio=0.5)
    ids = list(range(10, 28))  # 18 tokens -> 20 with CLS/SEP
    kept, short, unk, short_tokens = split_and_filter(ids, CLS, SEP, UNK, settings)
    # pieces of 8 over [CLS] 10..27 [SEP]: [CLS,10..16] [17..24] [25,26,27,SEP]
    assert kept == [[CLS, *range(10, 17), SEP], [CLS, *range(17, 25), SEP], [CLS, 25, 26, 27, SEP]]
    assert all(len(k) <= 10 and k[0] == CLS and k[-1] == SEP for k in kept)
    assert (short, unk, short_tokens) == (0, 0, 0)
    assert split_and_filter([5], CLS, SEP, UNK, settings) == ([], 1, 0, 3)  # 3 tokens < 4
    assert split_and_filter([UNK, UNK, 7], CLS, SEP, UNK, settings)[0]  # 2 UNK of 5 = 40%: kept


def test_unk_threshold_is_inclusive():
    settings = ShardSettings(max_seq_length=64, min_seq_length=4, max_unk_ratio=0.5)
    assert split_and_filter([UNK, 7, 8], CLS, SEP, UNK, settings)[0]  # 1/5 kept
    assert split_and_filter([UNK, UNK, UNK, 8], CLS, SEP, UNK, settings) == ([], 0, 1, 0)  # 3/6 = 50% dropped


def test_build_corpus_roundtrip_counts_and_cache(tmp_path, tokenizer, monkeypatch):
    _write_corpus(tmp_path / "c")
    files = discover_files(tmp_path / "c")
    settings = ShardSettings(max_seq_length=16, min_seq_length=12, shard_tokens=500)
    root = build_corpus(files, tokenizer, tmp_path / "cache", settings, num_workers=1)
    data = TokenSequenceDataset(root)
    assert data[0].dtype == np.int32
    assert len(list((root / "eng").glob("shard-*.bin"))) > 1  # rolled over at 500 tokens
    stats = data.meta["languages"]
    for s in stats.values():
        assert s["documents"] == 40 and s["sequences"] > 0 and s["dropped_short"] >= 2
    # Every stored sequence is a valid chunk; the first equals the tokenizer's own output.
    assert all(
        12 <= len(data[i]) <= 16 and data[i][0] == CLS and data[i][-1] == SEP for i in range(len(data))
    )
    # Documents 0 and 1 have 10 and 11 tokens with [CLS]/[SEP] and are dropped; document 2 is kept.
    third_doc = [text for text, _ in iter_documents(files["eng"][0])][2]
    expected = [CLS, *tokenizer(third_doc, add_special_tokens=False)["input_ids"], SEP]
    assert len(expected) == 12
    assert data[0].tolist() == expected
    counts = data.token_counts()
    assert counts.sum() == sum(s["tokens"] for s in stats.values()) == data.lengths.sum()
    assert counts[CLS] == len(data)
    # Second build: a cache hit, no tokenisation at all.
    monkeypatch.setattr("domain_distil.corpus.shards._build_language", lambda *a, **k: pytest.fail("re-tokenised"))
    assert build_corpus(files, tokenizer, tmp_path / "cache", settings) == root


def test_workers_give_identical_shards_and_resume_per_language(tmp_path, tokenizer):
    _write_corpus(tmp_path / "c", n_docs=1200)
    files = discover_files(tmp_path / "c")
    settings = ShardSettings(max_seq_length=32, min_seq_length=12)
    one = build_corpus(files, tokenizer, tmp_path / "a", settings, num_workers=1)
    two = build_corpus(files, tokenizer, tmp_path / "b", settings, num_workers=2)
    for lang in files:
        assert (one / lang / "shard-00000.bin").read_bytes() == (two / lang / "shard-00000.bin").read_bytes()
    # Simulate a run killed after 'eng': only the other languages are rebuilt.
    (two / "meta.json").unlink()
    for lang in ("esp", "por"):
        shutil.rmtree(two / lang)
    eng_mtime = (two / "eng" / "stats.json").stat().st_mtime_ns
    again = build_corpus(files, tokenizer, tmp_path / "b", settings, num_workers=1)
    assert again == two and (two / "eng" / "stats.json").stat().st_mtime_ns == eng_mtime
    assert (two / "por" / "stats.json").exists() and (two / "meta.json").exists()


def test_an_empty_corpus_file_is_named_before_any_work(tmp_path, tokenizer):
    _write_corpus(tmp_path / "c")
    (tmp_path / "c" / "rus.txt").write_bytes(b"")
    with pytest.raises(CorpusError) as raised:
        discover_files(tmp_path / "c")
    assert str(raised.value) == (f"{tmp_path / 'c' / 'rus.txt'}: the corpus file of language 'rus' is empty (0 bytes); "
                                 "add its text (one document per line) or remove the file")
    (tmp_path / "c" / "rus.txt").unlink()
    with gzip.open(tmp_path / "c" / "jap.txt.gz", "wb"):
        pass  # a valid gzip stream of nothing
    with pytest.raises(CorpusError, match=r"jap\.txt\.gz: the corpus file of language 'jap' is empty \(0 bytes uncompressed\)"):
        discover_files(tmp_path / "c")
    # Blank lines only: found while tokenising; the failed build leaves no lock or partial folder.
    (tmp_path / "c" / "jap.txt.gz").write_bytes(gzip.compress(b"\n  \n\n"))
    files = discover_files(tmp_path / "c")
    with pytest.raises(CorpusError, match=r"jap\.txt\.gz: the corpus of language 'jap' is empty: 3 blank lines and no text"):
        build_corpus(files, tokenizer, tmp_path / "cache", ShardSettings(max_seq_length=16))
    assert list((tmp_path / "cache" / "corpus").iterdir()) == []
