"""``py.typed`` stays honest: the built wheel ships it beside every module, so that a
user's type checker reads qoper8's annotations (``submit(..., result_type=User) -> User``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pip fetches setuptools for the isolated build the first time: seconds, not minutes.
BUILD_TIMEOUT = 300


@pytest.mark.slow
def test_the_wheel_ships_py_typed_and_every_module(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("qoper8", "workers"):
        if (ROOT / folder).is_dir():
            shutil.copytree(
                ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(project), "-w", str(out)],
        check=True,
        timeout=BUILD_TIMEOUT,
        capture_output=True,
    )
    (wheel,) = out.glob("qoper8-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "qoper8/py.typed" in names
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "qoper8").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
