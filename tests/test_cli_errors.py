"""Bad input stops with one line, `error: <what and where>`, exit status 2, no traceback (issue 10.8).

Most cases run the real command line in-process (``domain_distil.cli.main`` with ``sys.argv``), which
is what ``python run.py`` calls; one subprocess checks the real exit status and the absence of a
traceback, and that ``HYDRA_FULL_ERROR=1`` brings it back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from tiny_tasks import tag_rows, write_jsonl, write_result

from domain_distil import cli
from domain_distil.classification.taskfile import TaskFileError

ROOT = Path(__file__).resolve().parent.parent


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path,
            *args: str) -> tuple[int, str]:
    """(exit status, stderr) of ``domain-distil <args>`` run in-process from ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOMAIN_DISTIL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["domain-distil", *args])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    return code, capsys.readouterr().err


def _classify(task_file: Path, teacher: Path) -> list[str]:
    return ["task=classify", "cls_task=multilabel", f"cls_task.files=[{task_file}]", "encoder=path",
            f"encoder.name_or_path={teacher}", "logger=none"]


def _assert_one_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _rows_with_duplicate_id() -> list[dict]:
    rows = [{**row, "id": f"r{i}"} for i, row in enumerate(tag_rows(n=4))]
    rows[-1]["id"] = "r0"  # a test row reusing a train row's id
    return rows


def test_duplicate_id_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    path = write_jsonl(tmp_path / "tags.jsonl", _rows_with_duplicate_id())
    code, err = run_cli(monkeypatch, capsys, tmp_path, *_classify(path, tiny_teacher_dir))
    assert code == 2
    _assert_one_line(err, f"{path}:12: duplicate id 'r0'", f"first used at {path}:1", "train/test leak")


def test_invalid_utf8_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    path = write_jsonl(tmp_path / "tags.jsonl", tag_rows(n=4))
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"code", b"c\xf4de", 1)
    path.write_bytes(b"\n".join(lines))
    code, err = run_cli(monkeypatch, capsys, tmp_path, *_classify(path, tiny_teacher_dir))
    assert code == 2
    _assert_one_line(err, f"{path}:5: invalid UTF-8 (byte 0xf4 at byte")


@pytest.mark.parametrize("problem", ["missing", "no_weights", "not_a_model"])
def test_bad_teacher_folder_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, tiny_teacher_dir, problem):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "eng.txt").write_text("python code\n")
    folder = tmp_path / "teacher"
    if problem != "missing":
        folder.mkdir()
    if problem == "no_weights":
        (folder / "config.json").write_text((tiny_teacher_dir / "config.json").read_text())
    code, err = run_cli(monkeypatch, capsys, tmp_path, "task=distill", f"teacher.name_or_path={folder}",
                        f"corpus.dir={tmp_path / 'corpus'}", "logger=none")
    assert code == 2
    expected = {"missing": "no such folder", "no_weights": "has config.json but no weights",
                "not_a_model": "has no config.json"}[problem]
    _assert_one_line(err, f"teacher.name_or_path={folder}: the folder" if problem != "missing"
                     else f"teacher.name_or_path={folder}: ", expected)


def test_multirun_runs_every_job_and_ends_with_one_line(monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    """A job's SystemExit would skip the rest of a sweep: every job runs, each logs its error."""
    bad = [write_jsonl(tmp_path / f"bad{i}.jsonl", _rows_with_duplicate_id()) for i in range(2)]
    code, err = run_cli(monkeypatch, capsys, tmp_path, "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                        *_classify(bad[0], tiny_teacher_dir)[:2], f"cls_task.files=[{bad[0]}],[{bad[1]}]",
                        *_classify(bad[0], tiny_teacher_dir)[3:])
    # Hydra's status and compact report for a failed sweep: the first failed job's overrides, then
    # its one-line error; no traceback.
    assert code == 1 and "Traceback" not in err
    assert err.startswith("Error executing job with overrides: ['task=classify'")
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        line for line in err.splitlines() if "duplicate id 'r0'" in line]
    logged = [log.read_text() for log in (tmp_path / "sweep").rglob("*.log")]
    assert len(logged) == 2 and all("error: " in text and "duplicate id 'r0'" in text for text in logged)


def test_full_error_opt_in_raises_the_exception(monkeypatch, tmp_path, tiny_teacher_dir):
    path = write_jsonl(tmp_path / "tags.jsonl", _rows_with_duplicate_id())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["domain-distil", *_classify(path, tiny_teacher_dir)])
    try:
        with pytest.raises(TaskFileError, match="duplicate id 'r0'"):  # Hydra then prints the full traceback
            cli.main()
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.slow
def test_real_process_exit_status_is_2_without_traceback(tmp_path, tiny_teacher_dir):
    path = write_jsonl(tmp_path / "tags.jsonl", _rows_with_duplicate_id())
    env = {**os.environ, "DOMAIN_DISTIL_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, str(ROOT / "run.py"), *_classify(path, tiny_teacher_dir)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    _assert_one_line(done.stderr, "duplicate id 'r0'")


def test_invalid_utf8_in_a_corpus_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [f"document number {i} about orders refunds and delivery of packages today" for i in range(30)]
    data = "\n".join(lines).encode().split(b"\n")
    data[21] = data[21].replace(b"orders", b"ord\xffers", 1)
    (corpus / "eng.txt").write_bytes(b"\n".join(data) + b"\n")
    code, err = run_cli(monkeypatch, capsys, tmp_path, "task=distill", f"teacher.name_or_path={tiny_teacher_dir}",
                        f"corpus.dir={corpus}", "student.num_layers=2", "logger=none")
    assert code == 2
    _assert_one_line(err, f"{corpus / 'eng.txt'}:22: invalid UTF-8 (byte 0xff", "corpus.encoding_errors=replace")


def test_unknown_language_option_lists_the_languages_in_one_line(monkeypatch, capsys, tmp_path):
    expected = "lang=deu: there is no lang option 'deu'; the lang options are eng, esp, jap, por, rus"
    code, err = run_cli(monkeypatch, capsys, tmp_path, "task=classify", "lang=deu")
    assert code == 2
    _assert_one_line(err, expected)
    # In a sweep the whole multirun is refused before its first job, not after the eng job ran.
    code, err = run_cli(monkeypatch, capsys, tmp_path, "-m", "task=classify", "lang=eng,deu",
                        f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 2 and not (tmp_path / "sweep").exists()
    _assert_one_line(err, expected)


def test_empty_corpus_file_is_one_line_before_any_work(monkeypatch, capsys, tmp_path, tiny_teacher_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "eng.txt").write_text("".join(f"order {i} was refunded after the delivery failed\n" for i in range(30)))
    (corpus / "esp.txt").write_text("")  # before: distilled on English alone, exit 0
    code, err = run_cli(monkeypatch, capsys, tmp_path, "task=distill", f"teacher.name_or_path={tiny_teacher_dir}",
                        f"corpus.dir={corpus}", "student.num_layers=2", "logger=none")
    assert code == 2
    _assert_one_line(err, f"{corpus / 'esp.txt'}: the corpus file of language 'esp' is empty (0 bytes)")
    assert not (tmp_path / "cache" / "corpus").exists()  # refused before any tokenisation


def test_student_key_that_matches_nothing_is_one_line(monkeypatch, capsys, tmp_path):
    path = write_jsonl(tmp_path / "tags.jsonl", tag_rows(n=4))
    code, err = run_cli(monkeypatch, capsys, tmp_path, "task=classify", "cls_task=multilabel",
                        f"cls_task.files=[{path}]", "encoder=distilled", "encoder.key=3fa2c1", "logger=none")
    assert code == 2
    _assert_one_line(err, "error: encoder.key='3fa2c1' matches no student in", "(none: run task=distill first)")


def test_report_of_one_id_for_two_encoders_is_one_line(monkeypatch, capsys, tmp_path):
    # Two students' results that both carry the id `distilled` (what encoder=distilled called every
    # student before it named them): one line with the id, both hashes and the fix, never one row.
    for sweep, encoder_hash in (("in_domain", "1111aaaa2222bbbb"), ("general", "3333cccc4444dddd")):
        write_result(tmp_path / sweep, "distilled", "eng", True, 0, 0.8, encoder_hash=encoder_hash)
        write_result(tmp_path / sweep, "teacher", "eng", True, 0, 0.7, encoder_hash="5555eeee6666ffff")
    code, err = run_cli(monkeypatch, capsys, tmp_path, "~experiment", "task=report", "logger=none",
                        f"report.sweep_dirs=[{tmp_path / 'in_domain'},{tmp_path / 'general'}]",
                        "report.baselines.mbert=teacher", "~report.baselines.distilmbert")
    assert code == 2
    _assert_one_line(err, "encoder id 'distilled' names 2 different encoders", "hash 1111aaaa2222",
                     "hash 3333cccc4444", "encoder.id=<name>")


def test_report_baseline_without_runs_is_one_line_listing_the_ids(monkeypatch, capsys, tmp_path):
    # README's own-sweeps row without its report.baselines overrides: the defaults name distilmbert.
    write_result(tmp_path / "sweep", "distilled-chats-3fa2c1", "eng", True, 0, 0.8)
    write_result(tmp_path / "sweep", "teacher", "eng", True, 0, 0.7, encoder_hash="5555eeee6666ffff")
    code, err = run_cli(monkeypatch, capsys, tmp_path, "~experiment", "task=report", "logger=none",
                        f"report.sweep_dirs=[{tmp_path / 'sweep'}]")
    assert code == 2
    _assert_one_line(err, "report.baselines: encoder id(s) {'distilmbert': 'distilmbert'} have no successful runs",
                     "encoder ids found in the results: ['distilled-chats-3fa2c1', 'teacher']",
                     "'~report.baselines.distilmbert'")


@pytest.mark.parametrize("blocked", ["file_in_the_way", "sysfs"])
@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_an_output_folder_that_cannot_be_written_is_one_line_and_status_2(monkeypatch, capsys, tmp_path, blocked, mode):
    if blocked == "sysfs" and not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs (not Linux)")
    (tmp_path / "outputs").write_text("a file where the run folder should go\n")
    folder = {"file_in_the_way": tmp_path / "outputs" / "run", "sysfs": Path("/sys/domain-distil-run")}[blocked]
    setting = {"run": "hydra.run.dir", "multirun": "hydra.sweep.dir"}[mode]
    code, err = run_cli(monkeypatch, capsys, tmp_path, *(["-m"] if mode == "multirun" else []), "task=list",
                        f"{setting}={folder}")
    assert code == 2
    reason = "(Not a directory)" if blocked == "file_in_the_way" else ""  # sysfs: EPERM as root, EACCES otherwise
    _assert_one_line(err, f"error: {setting}={folder}: cannot create or write the run's output folder {reason}",
                     f"point paths.log_dir (or {setting}) at a writable folder")


@pytest.mark.parametrize(("argv", "expected"), [
    (["--config-dir", "/tmp/a=b", "lang=eng"], ["--config-dir", "/tmp/a=b", "experiment=demo", "lang=eng"]),
    (["-cd", "/tmp/a=b"], ["experiment=demo", "-cd", "/tmp/a=b"]),
    (["--config-dir=/tmp/a=b", "lang=eng"], ["--config-dir=/tmp/a=b", "experiment=demo", "lang=eng"]),
    (["--cfg", "job", "-cp", "/x/task=list"], ["experiment=demo", "--cfg", "job", "-cp", "/x/task=list"]),
])
def test_the_demo_is_added_after_a_flag_and_its_value(argv, expected):
    """A flag's value with `=` in it is not an override: the flag keeps its value."""
    assert cli.demo_by_default(argv) == expected
