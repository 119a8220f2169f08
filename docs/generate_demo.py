"""Regenerate the measured part of docs/demo.md from a real run of the demo.

    python docs/generate_demo.py              # runs `python run.py` in a fresh cache (twice), then
                                              # task=corpus_fit on the demo's corpus pair, then writes the docs
    python docs/generate_demo.py --run-dir D  # reads an existing demo run folder instead (no run)

The section between the markers in docs/demo.md is replaced by what the run printed: Table 8
with mean ± sd and marks, the p-value table, Table 5, wall times, the commit and the demo's
identity (``domain_distil/demo/identity.py``). ``tests/test_demo_doc.py`` checks that the recorded
identity is the checkout's, so the docs never describe numbers another configuration produced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain_distil.common.configs import config_dir  # noqa: E402
from domain_distil.common.provenance import git_commit  # noqa: E402
from domain_distil.demo.identity import demo_identity  # noqa: E402

DOC = ROOT / "docs" / "demo.md"
BEGIN, END = "<!-- demo-measured:begin -->", "<!-- demo-measured:end -->"


def current_identity() -> dict[str, str]:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=demo"])
    return demo_identity(OmegaConf.to_container(cfg.demo, resolve=False))


def recorded_identity(text: str) -> dict[str, str] | None:
    for line in text.splitlines():
        if line.startswith("<!-- demo-identity:"):
            return json.loads(line.removeprefix("<!-- demo-identity:").removesuffix("-->").strip())
    return None


def demo_env(work: Path) -> dict[str, str]:
    return {**os.environ, "DOMAIN_DISTIL_CACHE": str(work / "cache")}


def run_demo(work: Path) -> tuple[Path, float, float]:
    """Run the demo twice in ``work`` (fresh cache, then cached): the run folder and both wall times."""
    env = demo_env(work)
    times = []
    for attempt in ("first", "second"):
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "run.py"), f"hydra.run.dir={work / attempt}"],
                       cwd=work, env=env, check=True)
        times.append(time.perf_counter() - started)
    return work / "first", times[0], times[1]


FIT_TASKS = ("cc_intent", "td_tags")
LANGUAGES = ("eng", "esp", "jap", "por", "rus")



def corpus_fit(work: Path, env: dict[str, str]) -> dict[str, str]:
    """``task=corpus_fit`` of the demo's corpus pair against each demo task: the Markdown tables."""
    data = sorted((work / "cache" / "demo_data").iterdir())
    if len(data) != 1:
        raise SystemExit(f"expected one demo data folder in {work / 'cache' / 'demo_data'}, found {data}")
    data_dir, tables = data[0], {}
    for task in FIT_TASKS:
        out = work / f"corpus_fit_{task}"
        subprocess.run([sys.executable, str(ROOT / "run.py"), "task=corpus_fit", "teacher=me5_small",
                        f"cls_task={task}", f"cls_task.files=[{data_dir / 'tasks' / f'{task}.jsonl'}]",
                        f"cls_task.languages=[{','.join(LANGUAGES)}]", f"corpus_fit.languages=[{','.join(LANGUAGES)}]",
                        f"corpus_fit.candidates={{in_domain: {data_dir / 'in_domain'}, general: {data_dir / 'general'}}}",
                        "logger=none", f"hydra.run.dir={out}"], cwd=work, env=env, check=True)
        tables[task] = (out / "corpus_fit.md").read_text(encoding="utf-8").strip()
    return tables


def section(run_dir: Path, first_s: float | None, second_s: float | None,
            fit_tables: dict[str, str] | None = None) -> str:
    table8 = (run_dir / "report" / "table8.md").read_text(encoding="utf-8").strip()
    speed = (run_dir / "speed" / "speed.md").read_text(encoding="utf-8").strip()
    commit = git_commit()
    lines = [
        BEGIN,
        f"<!-- demo-identity: {json.dumps(current_identity())} -->",
        "",
        f"Measured with `python docs/generate_demo.py` at commit `{commit['commit'][:12]}`"
        f"{' (with uncommitted changes)' if commit.get('dirty') else ''} on {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}.",
    ]
    if first_s is not None:
        lines.append(f"The demo took {first_s:.0f} s from an empty cache (teacher conversion included, "
                     f"`pip install` not), and {second_s:.0f} s the second time "
                     f"({100 * second_s / first_s:.0f}% of the first: every student, feature file and job "
                     "came from the cache).")
    lines += ["", "### Table 8 (as `report/table8.md` printed it)", "", table8, "",
              "### Table 5 (as `speed/speed.md` printed it)", "", speed, ""]
    if fit_tables:
        lines += ["### Corpus fit of the demo's pair (`task=corpus_fit`, as `corpus_fit.md` printed it)", "",
                  "Both corpora against each task's training texts, with the teacher's tokenizer and encoder "
                  "(docs/corpus-selection.md says what each column measures; rank 1 fits best).", ""]
        for task, table in fit_tables.items():
            lines += [f"#### {task}", "", table, ""]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="an existing demo run folder (holding report/ and speed/)")
    parser.add_argument("--work", type=Path,
                        help="the folder of an earlier generate_demo run whose two demo runs finished: "
                             "re-read them and run only the corpus fit (give --seconds)")
    parser.add_argument("--seconds", type=float, nargs=2, metavar=("FIRST", "SECOND"),
                        help="with --work: the two runs' times as the demo printed them ('demo finished in N s')")
    args = parser.parse_args()
    if args.work:
        if not args.seconds:
            parser.error("--work needs --seconds FIRST SECOND")
        run_dir, (first, second) = args.work / "first", args.seconds
        fit_tables = corpus_fit(args.work, demo_env(args.work))
    elif args.run_dir:
        run_dir, first, second, fit_tables = args.run_dir, None, None, None
    else:
        work = Path(tempfile.mkdtemp(prefix="demo-doc-"))
        run_dir, first, second = run_demo(work)
        fit_tables = corpus_fit(work, demo_env(work))
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: the markers {BEGIN} / {END} are missing")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(head + section(run_dir, first, second, fit_tables) + tail, encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
