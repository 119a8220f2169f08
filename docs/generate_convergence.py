"""The convergence curve on real data (issue 23, docs/convergence.md): in-domain students of three
recipes at three token budgets on Debian English, frozen classifiers over 10 seeds, KS verdicts
against the general student and the teacher, and the F1 gap to the teacher against distillation
seconds.

    python run.py task=prepare corpus=debian                 # once (docs/debian.md)
    python docs/generate_convergence.py                      # distil, classify, write the doc
    python docs/generate_convergence.py --budgets 870000 3500000 10000000   # 5/20/60 min on 2 cores

Every student and classification job is an ordinary CLI run (`task=distill`, `task=classify -m`),
printed before it starts, so any point can be rerun by hand; students are cached by key and jobs
skip when their results exist, so a stopped run continues where it stopped.

Recipes:
- ``hidden``: today's `distill=hidden` (the demo's), from the teacher's layers;
- the better of ``layerwise`` and ``minilm`` on the validation F1 of the smallest budget (a screen
  that never looks at test scores), then at every budget;
- ``continued``: the general student (all of Debian's English general text, `distill=hidden`)
  distilled further on the in-domain corpus (`student.init=student student.from=<its key>`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain_distil.analysis.speed import machine_identity  # noqa: E402
from domain_distil.analysis.stats import ks_test  # noqa: E402
from domain_distil.common.cpu import cpu_flags  # noqa: E402
from domain_distil.common.provenance import git_commit  # noqa: E402

DOC = ROOT / "docs" / "convergence.md"
PLOT = ROOT / "docs" / "convergence.png"
BEGIN, END = "<!-- convergence-measured:begin -->", "<!-- convergence-measured:end -->"
SEEDS = range(10)
SCREENED = ("layerwise", "minilm")

# The demo's distillation settings (conf/experiment/demo.yaml, experiment=debian_td), English only;
# precision is left to the default (bf16-mixed on CPUs with bf16 instructions).
DISTIL = ["task=distill", "teacher=me5_small", "student=distil6", "corpus=text", "corpus.languages=[eng]",
          "corpus.max_seq_length=128", "distill.batch_size=16", "distill.trainer.accumulate_grad_batches=1",
          "distill.trainer.max_epochs=1", "distill.keep_checkpoints=false", "student.freeze_word_embeddings=true",
          "logger=none"]
# The demo's frozen classifiers (demo.classify) on debian_tags.
CLASSIFY = ["task=classify", "teacher=me5_small", "cls_task=debian_tags", "lang=eng", "encoder.freeze=true",
            "classify.optimizer.lr=3.0e-3", "classify.batch_size=32", "classify.trainer.max_epochs=10",
            "logger=none", f"seed=range(0,{len(SEEDS)})"]


@dataclass(frozen=True)
class Session:
    """Where the runs write, their environment, and the overrides every run shares (the data folder)."""

    work: Path
    env: dict[str, str]
    shared: tuple[str, ...]


@dataclass
class Student:
    """One distillation: its id in the tables, its recipe, budget and CLI overrides."""

    id: str
    recipe: str
    budget: int | None
    overrides: list[str]
    folder: Path | None = None
    manifest: dict = field(default_factory=dict)


def run_cli(overrides: Sequence[str], env: dict[str, str], log: Path) -> str:
    """``python run.py <overrides>`` with its output in ``log``; the output (an error names the log)."""
    command = [sys.executable, str(ROOT / "run.py"), *overrides]
    print("$", "python run.py", *overrides, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    text = log.read_text(encoding="utf-8")
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}), see {log}:\n{text[-2000:]}")
    return text


def distil(student: Student, session: Session) -> Student:
    output = run_cli([*DISTIL, *session.shared, *student.overrides, f"hydra.run.dir={session.work / 'distill' / student.id}"],
                     session.env, session.work / "logs" / f"distill-{student.id}.log")
    line = next(line for line in reversed(output.splitlines()) if line.startswith("Student: "))
    student.folder = Path(line.removeprefix("Student: ").strip())
    student.manifest = json.loads((student.folder / "manifest.json").read_text(encoding="utf-8"))
    return student


def classify(encoder_id: str, encoder: Sequence[str], session: Session) -> None:
    run_cli(["-m", *CLASSIFY, *session.shared, *encoder, f"encoder.id={encoder_id}",
             f"hydra.sweep.dir={session.work / 'classify' / encoder_id}"],
            session.env, session.work / "logs" / f"classify-{encoder_id}.log")


def classify_student(student: Student, session: Session) -> None:
    classify(student.id, ["encoder=path", f"encoder.name_or_path={student.folder}"], session)


def scores(work: Path, encoder_id: str, split: str = "test") -> list[float]:
    """The 10 seeds' F1 (``test``, or ``best_val`` for the screen) of one encoder, in seed order."""
    found = {}
    for path in (work / "classify" / encoder_id).rglob("results.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("status") == "failed":  # its results.json has no scores, only the error
            raise SystemExit(f"{path}: this classify job failed ({record.get('error')}); see its log and rerun")
        found[int(record["seed"])] = 100 * float(record[split]["f1"])
    missing = sorted(set(SEEDS) - set(found))
    if missing:
        raise SystemExit(f"{encoder_id}: no results for seeds {missing} under {work / 'classify' / encoder_id}")
    return [found[s] for s in SEEDS]


def in_parallel(jobs: int, calls: Sequence) -> list:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def budget_name(tokens: int) -> str:
    return f"{tokens / 1e6:g}M" if tokens >= 1_000_000 else f"{tokens // 1000}k"


def in_domain(recipe: str, budget: int, corpus: Path, general: Student | None = None) -> Student:
    if recipe not in ("hidden", "continued", *SCREENED):
        raise SystemExit(f"unknown recipe {recipe!r}: hidden, continued, {', '.join(SCREENED)}")
    overrides = [f"corpus.dir={corpus}", f"corpus.budget_tokens={budget}"]
    if recipe == "continued":
        overrides += ["distill=hidden", "student.init=student", f"student.from={general.manifest['key']}"]
    else:
        overrides.append(f"distill={recipe}")
    return Student(f"{recipe}-{budget_name(budget)}", recipe, budget, overrides)


def fmt_p(p: float) -> str:
    return f"{p:.2g}"


def render(work: Path, students: list[Student], general: Student, best: str, screen: dict[str, float],
           screened: list[Student]) -> str:
    teacher, general_f1 = scores(work, "teacher"), scores(work, general.id)
    hidden_at = {s.budget: s for s in students if s.recipe == "hidden"}
    t_mean = statistics.mean(teacher)
    rows = [
        "| recipe | budget (teacher tokens) | tokens seen | distillation s | tokens/s | F1 (mean ± sd, 10 seeds) "
        "| gap to teacher | KS p teacher > student | KS p student > general | KS p general > student "
        "| KS p student > hidden (same budget) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, s: Student | None, f1: list[float]) -> str:
        run = s.manifest if s else {}
        tokens = run.get("corpus_tokens")
        cells = [label, f"{s.budget:,}" if s and s.budget else "all",
                 f"{tokens:,}" if tokens else "–", f"{run['wall_seconds']:.0f}" if "wall_seconds" in run else "–",
                 f"{run['tokens_per_sec']:.0f}" if "tokens_per_sec" in run else "–",
                 f"{statistics.mean(f1):.1f} ± {statistics.stdev(f1):.1f}", f"{statistics.mean(f1) - t_mean:+.1f}"]
        if s is None:
            cells += ["", "", "", ""]
        else:
            cells.append(fmt_p(ks_test(teacher, f1)[1]))
            cells += ["", ""] if s is general else [fmt_p(ks_test(f1, general_f1)[1]), fmt_p(ks_test(general_f1, f1)[1])]
            hidden = hidden_at.get(s.budget) if s.recipe not in ("hidden", "general") else None
            cells.append(fmt_p(ks_test(f1, scores(work, hidden.id))[1]) if hidden else "")
        return "| " + " | ".join(cells) + " |"

    rows.append(row("teacher (me5_small)", None, teacher))
    rows.append(row("general student (hidden, all general text)", general, general_f1))
    for s in students:
        rows.append(row(s.id, s, scores(work, s.id)))
    total = sum(s.manifest["wall_seconds"] for s in {id(s): s for s in [general, *students, *screened]}.values())
    commit = git_commit()
    flags = ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in (cpu_flags() or set())) or "none"
    screen_line = ", ".join(f"{r} {v:.1f}" for r, v in screen.items())
    return "\n".join([
        BEGIN, "",
        f"Measured with `python docs/generate_convergence.py` at commit `{commit['commit'][:12]}`"
        f"{' (with uncommitted changes)' if commit.get('dirty') else ''} on {time.strftime('%Y-%m-%d')}, "
        f"{machine_identity()['cpu'] or platform.machine()}, {os.cpu_count()} cores ({flags}). Students were "
        "distilled two at a time, "
        f"one thread each, so *distillation s* is one core's seconds ({total / 3600:.1f} core-hours of "
        "distillation in all, the screened-out recipe included).",
        "",
        f"Screen (mean validation F1 at the smallest budget, test scores unseen): {screen_line}; "
        f"`{best}` went on to the larger budgets.",
        "",
        *rows, "",
        "![F1 gap to the teacher against distillation seconds](convergence.png)", "",
        END,
    ])


def plot(work: Path, students: list[Student], general: Student) -> None:
    """The gap to the teacher against distillation seconds (as measured, on a shared box) and
    against teacher tokens (what the seconds bought, free of the box's load), one line per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_mean = statistics.mean(scores(work, "teacher"))
    general_gap = t_mean - statistics.mean(scores(work, general.id))
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), sharey=True)
    for ax, key, label in ((axes[0], "wall_seconds", "distillation seconds (one core)"),
                           (axes[1], "corpus_tokens", "teacher tokens distilled on")):
        for recipe in dict.fromkeys(s.recipe for s in students):
            points = sorted((s.manifest[key], t_mean - statistics.mean(scores(work, s.id)))
                            for s in students if s.recipe == recipe)
            ax.plot(*zip(*points), marker="o", label=recipe)
        ax.axhline(general_gap, color="grey", linestyle="--", label="general student")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
    axes[0].set_ylabel("teacher F1 - student F1 (points)")
    axes[1].legend()
    fig.suptitle("Debian English, debian_tags, frozen classifiers, 10 seeds")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="paths.data_dir of task=prepare")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "convergence")
    parser.add_argument("--budgets", type=int, nargs="+", default=[150_000, 500_000, 1_500_000],
                        help="in-domain teacher tokens per student, smallest first")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    parser.add_argument("--extra", nargs="*", default=[], metavar="RECIPE=TOKENS",
                        help="further points of one recipe only, e.g. continued=3000000 (run after the grid)")
    args = parser.parse_args()
    prepared = args.data_dir.resolve() / "prepared" / "debian"
    if not (prepared / "tasks" / "debian_tags.jsonl").is_file():
        raise SystemExit(f"{prepared} lacks tasks/debian_tags.jsonl: run `python run.py task=prepare corpus=debian "
                         f"paths.data_dir={args.data_dir}` first")
    work, budgets = args.work.resolve(), sorted(args.budgets)
    session = Session(work, {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
                      (f"paths.data_dir={args.data_dir.resolve()}",))
    corpus = prepared / "corpus"

    general = Student("general", "general", None, [f"corpus.dir={prepared / 'general'}", "distill=hidden"])
    first = [in_domain(r, budgets[0], corpus) for r in ("hidden", *SCREENED)]
    in_parallel(args.jobs, [lambda s=s: distil(s, session) for s in [general, *first]])
    in_parallel(args.jobs, [lambda: classify("teacher", ["encoder=teacher"], session),
                            *[lambda s=s: classify_student(s, session) for s in [general, *first]]])
    screen = {s.recipe: statistics.mean(scores(work, s.id, "best_val")) for s in first if s.recipe in SCREENED}
    best = max(screen, key=screen.get)

    rest = [in_domain(r, b, corpus) for b in budgets[1:] for r in ("hidden", best)]
    rest += [in_domain("continued", b, corpus, general) for b in budgets]
    rest.sort(key=lambda s: -s.budget)  # the longest first: two workers finish together
    in_parallel(args.jobs, [lambda s=s: distil(s, session) for s in rest])
    in_parallel(args.jobs, [lambda s=s: classify_student(s, session) for s in rest])

    extra = [in_domain(recipe, int(tokens), corpus, general) for recipe, _, tokens in (e.partition("=") for e in args.extra)]
    if any(s.recipe not in ("hidden", best, "continued") for s in extra):
        raise SystemExit(f"--extra: the curve has hidden, {best} and continued; got {args.extra}")
    in_parallel(args.jobs, [lambda s=s: distil(s, session) for s in extra])
    in_parallel(args.jobs, [lambda s=s: classify_student(s, session) for s in extra])
    rest += extra

    students = sorted([s for s in first if s.recipe in ("hidden", best)] + rest,
                      key=lambda s: (["hidden", best, "continued"].index(s.recipe), s.budget))
    plot(work, students, general)
    section = render(work, students, general, best, screen, first)
    (work / "convergence.md").write_text(section + "\n", encoding="utf-8")
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else f"{BEGIN}\n{END}\n"
    head, _, tail = text.partition(BEGIN)
    DOC.write_text(head + section + tail.partition(END)[2], encoding="utf-8")
    print(section)


if __name__ == "__main__":
    main()
