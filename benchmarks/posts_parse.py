"""Posts.xml parsing speed and memory: does peak RSS stay flat as the file grows?

    python benchmarks/posts_parse.py            # 100 MB and 500 MB files in a temp dir
    python benchmarks/posts_parse.py --sizes 20 100

Generates Posts.xml files in the real dump format (tests/synthetic_dumps.py), parses each in a fresh
subprocess with ``PostsFile.posts()`` (the reader task=prepare uses; every post's fields are
built; with ``--text`` also the HTML-to-text step) and reads that process's peak RSS (``ru_maxrss``). Prints MB/s and
peak RSS per file; the last line is the RSS ratio largest/smallest, which must be <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # synthetic_dumps

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from domain_distil.sources.stackexchange import PostsFile
t = time.perf_counter()
posts = 0
for post in PostsFile({path!r}).posts():
    posts += 1
    if {text}:
        post.text()
elapsed = time.perf_counter() - t
print(json.dumps({{"posts": posts, "seconds": elapsed,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def generate(path: Path, megabytes: int) -> int:
    """Write synthetic posts until the file reaches ``megabytes`` MB (10^6 bytes)."""
    from synthetic_dumps import synthetic_posts, write_posts_xml

    target = megabytes * 10**6

    def rows():
        seed = 0
        while True:
            # Ids must keep increasing across batches, as in a real dump.
            offset = seed * 2_000_000
            for row in synthetic_posts(1000, seed=seed, body_words=60, fake_posts=False):
                if row["PostTypeId"] == 4:
                    continue
                row = dict(row, Id=int(row["Id"]) + offset)
                if "ParentId" in row:
                    row["ParentId"] = int(row["ParentId"]) + offset
                yield row
            seed += 1
            if handle.tell() >= target:
                return

    with open(path, "w", encoding="utf-8") as handle:
        write_posts_xml(handle, rows())
    return path.stat().st_size


def measure(path: Path, text: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), path=str(path), text=text)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500], help="file sizes in MB")
    parser.add_argument("--text", action="store_true", help="also turn every post's HTML into text")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="posts_bench_") as tmp:
        for mb in args.sizes:
            path = Path(tmp) / f"Posts_{mb}MB.xml"
            size = generate(path, mb)
            r = measure(path, args.text)
            path.unlink()  # keep at most one big file on disk at a time
            mbps = size / 1e6 / r["seconds"]
            rss_mb = r["max_rss_kb"] / 1024
            results.append(rss_mb)
            print(
                f"{size / 1e6:8.1f} MB  {r['posts']:>9d} posts  {r['seconds']:7.1f} s  {mbps:6.1f} MB/s  "
                f"peak RSS {rss_mb:6.1f} MiB",
                flush=True,
            )
    ratio = results[-1] / results[0]
    print(
        f"RSS ratio {args.sizes[-1]} MB vs {args.sizes[0]} MB: {ratio:.3f} ({'ok' if ratio <= 1.2 else 'FAIL'}, limit 1.2)"
    )


if __name__ == "__main__":
    main()
