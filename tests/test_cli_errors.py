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
from tiny_tasks import tag_rows, write_jsonl

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
