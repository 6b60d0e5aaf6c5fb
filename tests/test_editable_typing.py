"""The README's fix for type checking an editable install works: after
``pip install -e . --config-settings editable_mode=strict`` mypy finds qoper8 and infers
``submit(..., result_type=User) -> User`` in a user's script. The default editable install
is checked too: it goes through an import hook, which static checkers never run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# An isolated build (setuptools from pip's cache) and a cold mypy run.
STEP_TIMEOUT = 300

USER_SCRIPT = """\
from pydantic import BaseModel
import qoper8

class User(BaseModel):
    id: int

async def main(pool: qoper8.Pool) -> None:
    user = await pool.submit({"type": "user.get", "id": 1}, result_type=User)
    reveal_type(user)
"""


def _editable_venv(tmp: Path, *install_options: str) -> Path:
    """A fresh venv with an editable install of a copy of this project; qoper8's
    dependencies and mypy come from this test run's environment, not the network."""
    project = tmp / "project"
    project.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("qoper8", "workers"):
        if (ROOT / folder).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / folder, project / folder, ignore=ignore)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = sysconfig.get_paths(vars={"base": str(env_dir), "platbase": str(env_dir)})["purelib"]
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run(
        [*install, "--no-deps", "-e", str(project), *install_options],
        check=True,
        capture_output=True,
        timeout=STEP_TIMEOUT,
    )
    return Path(site)


@pytest.mark.slow
def test_the_readmes_editable_mode_lets_mypy_see_qoper8(tmp_path: Path) -> None:
    default_site = _editable_venv(tmp_path / "default")
    (pth,) = default_site.glob("__editable__*qoper8*.pth")
    assert pth.read_text().startswith("import "), "the default mode installs an import hook"

    site = _editable_venv(tmp_path / "strict", "--config-settings", "editable_mode=strict")
    script = tmp_path / "app.py"
    script.write_text(USER_SCRIPT)
    python = site.parents[2] / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-executable", str(python), "app.py"],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        cwd=tmp_path,
    )
    assert 'Revealed type is "app.User"' in done.stdout, done.stdout
    assert "error" not in done.stdout, done.stdout
