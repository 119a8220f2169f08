"""docs/demo.md shows numbers measured with the checkout's demo: same configuration, same code."""

from __future__ import annotations

from pathlib import Path

from scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    return load_script("docs/generate_demo.py")


def test_demo_doc_was_measured_with_this_configuration_and_code():
    generator = _generator()
    recorded = generator.recorded_identity((ROOT / "docs" / "demo.md").read_text(encoding="utf-8"))
    assert recorded is not None, "docs/demo.md has no recorded demo identity: run python docs/generate_demo.py"
    assert recorded == generator.current_identity(), (
        "The demo's configuration or code changed since docs/demo.md was measured; regenerate its tables with "
        "`python docs/generate_demo.py` and commit them with this change."
    )


def test_identity_changes_with_config_and_code(tmp_path):
    from domain_distil.demo.identity import demo_identity

    for name in ("a.py", "b.py"):
        (tmp_path / "lightning_modules").mkdir(exist_ok=True)
        (tmp_path / "lightning_modules" / name).write_text("x = 1\n")
    base = demo_identity({"seeds": [0, 1]}, root=tmp_path)
    assert demo_identity({"seeds": [0, 1]}, root=tmp_path) == base
    assert demo_identity({"seeds": [0, 1, 2]}, root=tmp_path)["config"] != base["config"]
    (tmp_path / "lightning_modules" / "a.py").write_text("x = 2\n")
    assert demo_identity({"seeds": [0, 1]}, root=tmp_path)["code"] != base["code"]
