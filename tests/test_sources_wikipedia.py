"""Wikipedia: a bz2 export in the real schema -> text -> chunks -> random chunks to a budget."""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest
from synthetic_dumps import synthetic_articles, write_file, write_wikipedia_xml

from domain_distil.sources.sampling import smoothed_probabilities
from domain_distil.sources.streams import MalformedInputError
from domain_distil.sources.wikipedia import (
    WikipediaBuilder,
    iter_articles,
    iter_chunks,
    split_document,
    wikitext_to_text,
)
from domain_distil.sources.writers import PreparedDir, line_bytes
from domain_distil.tasks import prepare


def make_dump(path: Path, n: int = 60, seed: int = 0) -> Path:
    return write_file(path, write_wikipedia_xml, synthetic_articles(n, seed=seed))


def test_wikitext_to_text_drops_markup() -> None:
    text = wikitext_to_text(
        "{{Infobox x|a=1}}'''Java''' is an [[island]] of [[Indonesia|the country]].<ref>{{cite|x}}</ref>\n\n"
        "[[File:Java.png|thumb|A map]]\n== History ==\nIt has &amp; coffee.\n\n[[Category:Islands]]"
    )
    assert "Java is an island of the country." in text
    assert "It has & coffee." in text
    for markup in ("{{", "[[", "<ref", "Category:", "File:", "thumb", "'''"):
        assert markup not in text


def test_articles_skip_talk_pages_and_short_ones(tmp_path: Path) -> None:
    path = make_dump(tmp_path / "enwiki-20230101-pages-articles.xml.bz2", n=30)
    articles = list(iter_articles(path, namespaces=(0,), min_chars=100))
    assert [a[0] for a in articles] == [i for i in range(1, 31) if i % 10]  # ns 1 every 10th page
    assert articles[0][1] == "Article 1" and articles[0][2].startswith("Article1 ")
    assert not list(iter_articles(path, min_chars=10**6))


def test_the_bz2_stream_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_dump(tmp_path / "w.xml.bz2", n=30)
    opened: list[bz2.BZ2File] = []
    monkeypatch.setattr(bz2, "open", lambda *a, **k: opened.append(bz2.BZ2File(*a, **k)) or opened[-1])
    assert len(list(iter_articles(path))) == 27
    articles = iter_articles(path)
    next(articles)
    articles.close()  # a reader that stops early
    assert len(opened) == 2 and all(stream.closed for stream in opened)


def test_split_document_and_chunk_sizes() -> None:
    text = "\n\n".join(f"para{i} " + "word " * (i * 7) for i in range(40))
    pieces = split_document(text, 300)
    assert all(line_bytes(p) <= 300 for p in pieces) and len(pieces) > 10
    assert " ".join(pieces).split() == text.split()  # nothing lost, nothing added
    lines = [f"doc{i} " + "x" * (i % 90) for i in range(500)]
    chunks = list(iter_chunks(iter(lines), 1000))
    sizes = [sum(line_bytes(x) for x in c) for c in chunks]
    assert all(s <= 1000 for s in sizes)
    # Greedy packing: a chunk closes only when the next line would not fit.
    assert all(s + line_bytes(c2[0]) > 1000 for s, c2 in zip(sizes, chunks[1:]))
    assert [x for c in chunks for x in c] == lines


def test_truncated_bz2_names_the_offset(tmp_path: Path) -> None:
    path = make_dump(tmp_path / "w.xml.bz2", n=400)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(
        MalformedInputError,
        match=r"w\.xml\.bz2: truncated or malformed dump at compressed byte offset about \d+",
    ):
        list(iter_articles(path))


def test_budget_random_chunks(tmp_path: Path) -> None:
    dump = make_dump(tmp_path / "eswiki.xml.bz2", n=200, seed=1)
    total_text = sum(line_bytes(p) for _, _, t in iter_articles(dump) for p in split_document(t, 1000))
    builder = WikipediaBuilder({"esp": str(dump)}, {"esp": 5e-5}, chunk_bytes=1000)
    out = PreparedDir(tmp_path / "prep")
    rec = builder.build(out, ["esp"], seed=3)["languages"]["esp"]
    text = (out.corpus_dir / "esp.txt").read_text()
    assert total_text > 3 * 50_000  # the budget is a real subsample
    assert rec["corpus"]["bytes"] == len(text.encode()) == sum(line_bytes(x) for x in text.splitlines())
    assert abs(rec["corpus"]["bytes"] - 50_000) <= 0.01 * 50_000
    chosen = rec["chunks_selected"]
    assert chosen == sorted(chosen) and len(set(chosen)) == len(chosen) and max(chosen) < rec["chunks_total"]
    assert chosen != list(range(len(chosen)))  # random chunks, not the first ones
    other = builder.build(PreparedDir(tmp_path / "prep2"), ["esp"], seed=4)["languages"]["esp"]
    assert other["chunks_selected"] != chosen
    assert not (out.state_dir / "wikipedia" / "esp").exists()  # spill folder cleaned up


def test_smoothing_formula_spec_example() -> None:
    q = smoothed_probabilities({"eng": 20, "rus": 5, "esp": 4, "jap": 3.5, "por": 2}, alpha=0.7)
    assert [round(q[x], 3) for x in ("eng", "rus", "esp", "jap", "por")] == [
        0.455,
        0.172,
        0.147,
        0.134,
        0.091,
    ]
    assert sum(q.values()) == pytest.approx(1.0)
    assert smoothed_probabilities({"a": 3, "b": 1}, alpha=1.0) == {"a": 0.75, "b": 0.25}
    assert smoothed_probabilities({"a": 3, "b": 1}, alpha=0.0) == {"a": 0.5, "b": 0.5}


def test_prepare_wikipedia_with_smoothed_total(make_cfg, tmp_path: Path) -> None:
    big = make_dump(tmp_path / "enwiki.xml.bz2", n=240, seed=5)
    small = make_dump(tmp_path / "ptwiki.xml.bz2", n=120, seed=6)
    cfg = make_cfg(
        "task=prepare",
        "corpus=wikipedia",
        "corpus.languages=[eng,por]",
        f"corpus.source.dumps.eng={big}",
        f"corpus.source.dumps.por={small}",
        "corpus.source.chunk_bytes=800",
        "corpus.source.total_gb=8e-5",
        "corpus.source.sizes={eng:3.0,por:1.0}",
    )
    manifest = prepare.run(cfg)
    q = smoothed_probabilities({"eng": 3.0, "por": 1.0})
    for lang in ("eng", "por"):
        rec = manifest["languages"][lang]["corpus"]
        assert rec["budget_gb"] == pytest.approx(8e-5 * q[lang])
        assert abs(rec["bytes"] - rec["budget_bytes"]) <= 0.01 * rec["budget_bytes"] + 400  # half a chunk
    assert bz2.open(big).read(10)  # inputs untouched
    assert (Path(cfg.corpus.dir) / "eng.txt").exists()
