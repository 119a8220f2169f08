"""Stack Exchange reader and the TD task sampler, on dumps built here in the real format."""

from __future__ import annotations

import random
from pathlib import Path

import py7zr
import pytest
from synthetic_dumps import synthetic_posts, write_file, write_posts_xml

from domain_distil.sources.html_text import html_to_text
from domain_distil.sources.sampling import uniform_key
from domain_distil.sources.stackexchange import FAKE_POST_IDS, PostsFile, language_of, parse_tags, site_of
from domain_distil.sources.streams import MalformedInputError, open_7z_member
from domain_distil.sources.td_task import (
    TOP10_TAGS,
    Candidate,
    CandidatePool,
    TagTaskSpec,
    TaskSamplingError,
    sample_splits,
)


def make_dump(tmp_path: Path, n: int = 50, style: str = "angle", archive: bool = False) -> Path:
    xml = write_file(tmp_path / "Posts.xml", write_posts_xml, synthetic_posts(n, seed=1, tag_style=style))
    if not archive:
        return xml
    path = tmp_path / "es.stackoverflow.com.7z"
    with py7zr.SevenZipFile(path, "w") as z:
        z.write(xml, "Posts.xml")
        z.writestr(b'<?xml version="1.0"?>\n<users></users>\n', "Users.xml")
    xml.unlink()
    return path


def test_parse_tags_both_formats() -> None:
    assert parse_tags("<c#><winforms>") == ("c#", "winforms")
    assert parse_tags("|c#|winforms|") == ("c#", "winforms")
    assert parse_tags("|c++|") == ("c++",)
    assert parse_tags(None) == () and parse_tags("") == ()
    with pytest.raises(ValueError, match="neither"):
        parse_tags("c# winforms")
    with pytest.raises(ValueError, match="<a><b>"):
        parse_tags("<c#>winforms")


def test_sites_map_to_the_paper_languages() -> None:
    assert [
        language_of(s)
        for s in (
            "stackoverflow.com",
            "es.stackoverflow.com",
            "ja.stackoverflow.com",
            "pt.stackoverflow.com",
            "ru.stackoverflow.com",
        )
    ] == ["eng", "esp", "jap", "por", "rus"]
    assert site_of("/d/stackoverflow.com-Posts.7z") == "stackoverflow.com"
    assert site_of("ru.stackoverflow.com.7z") == "ru.stackoverflow.com"


def test_posts_xml_and_7z_give_the_same_posts_without_fakes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = PostsFile(make_dump(tmp_path / "a", style="pipe"))
    packed = PostsFile(make_dump(tmp_path / "b", style="angle", archive=True))
    a, b = list(plain.posts()), list(packed.posts())
    assert len(a) == 100  # 50 questions + 50 answers; the tag-wiki row (type 4) is skipped
    assert a == b  # both tag formats parse to the same tuples
    assert plain.fake_skipped == packed.fake_skipped == 2
    assert not FAKE_POST_IDS & {p.id for p in a}
    q = a[0]
    assert q.is_question and q.title.startswith("title1 ") and q.tags
    assert a[1].parent_id == 1 and a[1].title == ""
    assert "post1 " in q.text() and "&amp;" not in q.text() and "x < y" in q.text()
    assert packed.member == "Posts.xml" and packed.total_bytes > 0


def test_code_policies() -> None:
    body = "<p>Use <code>a&lt;b</code> so:</p><pre><code>x = 1\ny = 2\n</code></pre><p>done</p>"
    assert html_to_text(body) == "Use a<b so: x = 1 y = 2 done"
    assert html_to_text(body, code="drop") == "Use a<b so: done"
    assert html_to_text(body, code="placeholder") == "Use a<b so: [CODE] done"
    assert html_to_text(body, code="drop", inline_code="placeholder", placeholder="<c>") == "Use <c> so: done"
    with pytest.raises(ValueError):
        html_to_text(body, code="strip")
    assert html_to_text("<p>a</p><!-- note --><p>b &amp; c</p>") == "a b & c"
    assert html_to_text("<!-- only a comment -->") == "" and html_to_text("") == ""
    assert html_to_text("<blockquote>q</blockquote><ul><li>x</li><li>y</li></ul>") == "q x y"


def test_truncated_posts_xml_names_the_position(tmp_path: Path) -> None:
    path = make_dump(tmp_path, n=40)
    data = path.read_bytes()
    cut = data.rfind(b"<row", 0, len(data) // 2) + 30  # inside a row, half way through
    path.write_bytes(data[:cut])
    with pytest.raises(
        MalformedInputError,
        match=r"Posts\.xml: malformed or truncated XML at line \d+, column \d+ "
        r"\(byte offset about \d+ of \d+\) after \d+ rows \(last row Id=",
    ):
        list(PostsFile(path).posts())


def test_truncated_7z_archive_is_reported(tmp_path: Path) -> None:
    path = make_dump(tmp_path, n=40, archive=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedInputError, match="not a readable 7z archive.*is the download complete"):
        PostsFile(path)


def _corrupt_7z_dump(tmp_path: Path) -> Path:
    """A 7z dump whose compressed stream (not its header) is damaged: it opens, then fails mid-way."""
    path = make_dump(tmp_path, n=1500, archive=True)
    data = bytearray(path.read_bytes())
    for i in range(2000, 2100):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))
    return path


def test_corrupt_7z_data_is_reported_with_the_position(tmp_path: Path) -> None:
    path = _corrupt_7z_dump(tmp_path)
    with pytest.raises(
        MalformedInputError, match=r"decompressing Posts\.xml failed .*uncompressed byte offset about \d+"
    ):
        list(PostsFile(path).posts())


def test_a_7z_decompression_error_does_not_mask_the_readers_own(tmp_path: Path) -> None:
    path = _corrupt_7z_dump(tmp_path)
    with pytest.raises(MalformedInputError, match=r"decompressing Posts\.xml failed"):
        with open_7z_member(path, "Posts.xml") as stream:
            stream.read()  # to where decompression stopped
    with pytest.raises(KeyError, match="the reader's own"):
        with open_7z_member(path, "Posts.xml") as stream:
            stream.read()
            raise KeyError("the reader's own")


def test_stopping_early_ends_the_7z_thread(tmp_path: Path) -> None:
    import threading

    path = make_dump(tmp_path, n=1500, archive=True)
    posts = PostsFile(path).posts()
    first = [next(posts) for _ in range(5)]
    posts.close()
    assert [p.id for p in first] == [1, 2, 3, 4, 5]
    assert not [t for t in threading.enumerate() if t.name.startswith("7z:")]


def test_row_without_required_attribute(tmp_path: Path) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<posts>\n  <row Id="1" PostTypeId="1" Title="t" Body="b" />\n'
        '  <row Id="2" Body="x" />\n</posts>\n'
    )
    with pytest.raises(MalformedInputError, match="line 4: row lacks the required attribute PostTypeId"):
        list(PostsFile(path).posts())


# -- task sampling ----------------------------------------------------------------------------
def candidates(n: int, seed: int = 0, rare: str | None = None, rare_count: int = 0) -> list[Candidate]:
    """Questions with 1-3 of the ten tags, javascript most common (as on StackOverflow)."""
    rng = random.Random(seed)
    spec = TagTaskSpec()
    weights = [10, 11, 9, 12, 9, 8, 7, 6, 5, 5]
    out = []
    for pid in range(1, n + 1):
        tags = set(rng.choices(TOP10_TAGS, weights, k=rng.choice((1, 1, 2, 3))))
        if rare is not None:
            tags.discard(rare)
            if pid <= rare_count:
                tags.add(rare)
            if not tags:
                tags = {"java"}
        out.append(Candidate(uniform_key(seed, pid), pid, spec.mask(sorted(tags)), 100))
    return out


def run_pool(cands: list[Candidate], spec: TagTaskSpec) -> dict[str, list[Candidate]]:
    pool = CandidatePool(spec)
    for c in cands:
        pool.offer(c)
    return pool.sample("test")


def test_paper_sizes_per_tag_minimum_and_disjointness() -> None:
    spec = TagTaskSpec()
    splits = run_pool(candidates(30_000), spec)
    assert {s: len(v) for s, v in splits.items()} == {"test": 1000, "val": 1000, "train": 8000}
    for split in ("test", "val"):
        for i, tag in enumerate(spec.tags):
            assert sum(c.mask >> i & 1 for c in splits[split]) >= 100, (split, tag)
    ids = [c.post_id for cs in splits.values() for c in cs]
    assert len(ids) == len(set(ids)) == 10_000
    assert all(c.mask for cs in splits.values() for c in cs)  # every task post has one of the tags


def test_japanese_half_size() -> None:
    spec = TagTaskSpec().scaled(0.5)
    assert dict(spec.sizes) == {"test": 500, "val": 500, "train": 4000}
    splits = run_pool(candidates(8_000, seed=3), spec)
    assert [len(splits[s]) for s in ("test", "val", "train")] == [500, 500, 4000]
    for i in range(10):
        assert min(sum(c.mask >> i & 1 for c in splits[s]) for s in ("test", "val")) >= 50


def test_bounded_pool_equals_sampling_over_all_candidates() -> None:
    spec = TagTaskSpec(
        sizes={"test": 60, "val": 60, "train": 100}, min_per_tag={"test": 5, "val": 5, "train": 0}
    )
    cands = candidates(5_000, seed=7)
    order = sorted(cands, key=lambda c: (c.key, c.post_id))
    full = sample_splits(
        order,
        [[c for c in order if c.mask >> i & 1] for i in range(10)],
        [sum(c.mask >> i & 1 for c in cands) for i in range(10)],
        spec,
    )
    bounded = run_pool(cands, spec)
    assert {s: [c.post_id for c in v] for s, v in full.items()} == {
        s: [c.post_id for c in v] for s, v in bounded.items()
    }
    assert run_pool(list(reversed(cands)), spec) == bounded  # file order does not matter, only the seed


def test_seed_changes_the_sample() -> None:
    spec = TagTaskSpec(
        sizes={"test": 60, "val": 60, "train": 100}, min_per_tag={"test": 5, "val": 5, "train": 0}
    )
    a = run_pool(candidates(3_000, seed=1), spec)
    b = run_pool(candidates(3_000, seed=2), spec)
    assert {c.post_id for c in a["test"]} != {c.post_id for c in b["test"]}


def test_rare_tag_fails_with_a_clear_message() -> None:
    with pytest.raises(
        TaskSamplingError, match=r"test: split 'val' needs tag 'ios' at least 100 times, but only \d+"
    ):
        run_pool(candidates(30_000, rare="ios", rare_count=150), TagTaskSpec())
    with pytest.raises(TaskSamplingError, match="split 'train' needs 8000 questions"):
        run_pool(candidates(6_000), TagTaskSpec())


def test_a_post_with_a_text_node_over_10_mb_keeps_its_text() -> None:
    # libxml2's default limit would drop the node and leave the post empty, with no error.
    big = "word " * (2_300_000)  # 11.5 MB in one text node
    text = html_to_text(f"<p>{big}</p><pre><code>x = 1</code></pre>", code="placeholder")
    assert text == " ".join(["word"] * 2_300_000) + " [CODE]"
