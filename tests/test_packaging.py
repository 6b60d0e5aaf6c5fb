"""What an install gets: the wheel ships ``qoper8`` alone (the examples in ``workers/`` stay
in the repository), and the installed ``qoper8`` script finds a user's worker modules in the
working directory first, as ``python -m qoper8`` does.

Built and installed for real (not editable) into a fresh venv. Its dependencies come from
this test run's environment through a ``.pth`` line, which adds that ``site-packages`` as a
plain directory: its editable-install hook for qoper8 is not run, so the only qoper8 the
fresh venv can import is the wheel's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from typing import TYPE_CHECKING

import pytest

from tests.daemon_support import REPO, free_port

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# Guards, not expectations: building and installing take a few seconds on a quiet machine.
STEP_TIMEOUT = 90.0
READY_TIMEOUT = 30.0

USER_WORKER = """
import qoper8

worker = qoper8.Worker()


@worker.handler("user.get")
def get_user(id: int) -> dict[str, object]:
    return {"id": id, "from": "the user's own workers/users.py"}
"""


def _run(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    done = subprocess.run(
        [os.fspath(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(tmp: Path) -> Path:
    """Build qoper8's wheel from a copy of the sources (the build leaves files behind)."""
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("qoper8", "workers"):  # workers/ is there, as in a clone: it must not ship
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", dist, src)  # fmt: skip
    (wheel,) = dist.glob("qoper8-*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed (and its script), dependencies borrowed."""
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = sysconfig.get_paths()["purelib"]
    (venv / "lib" / site.strip().rsplit("/lib/", 1)[1] / "deps.pth").write_text(ours + "\n")
    return venv


def test_the_wheel_ships_qoper8_only_and_its_script_serves_the_users_workers(
    tmp_path: Path,
) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "qoper8/py.typed" in names
    for asset in ("index.html", "app.js", "app.css"):  # the dashboard ships in the package
        assert f"qoper8/_daemon/dashboard/{asset}" in names
    assert not [n for n in names if n.startswith("workers/")], "the examples were shipped"
    venv = fresh_venv(tmp_path, wheel)
    where = "import qoper8; print(qoper8.__file__)"
    located = _run(venv / "bin" / "python", "-c", where, cwd=tmp_path)
    assert located.startswith(os.fspath(venv)), located

    project = tmp_path / "project"  # laid out as the README shows
    (project / "workers").mkdir(parents=True)
    (project / "workers" / "__init__.py").write_text("")
    (project / "workers" / "users.py").write_text(USER_WORKER)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and k[:7] != "QOPER8_"}
    proc = subprocess.Popen(
        [venv / "bin" / "qoper8", "serve", "--worker", "workers.users:worker",
         "--children", "1", "--port", str(port)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            try:
                with urllib.request.urlopen(url + "/v1/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, "the installed daemon was not ready in time"
            time.sleep(0.05)
        request = urllib.request.Request(
            url + "/v1/submit", data=b'{"type": "user.get", "id": 7}', method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = json.loads(resp.read())
        assert answer == {"result": {"id": 7, "from": "the user's own workers/users.py"}}
        with urllib.request.urlopen(url + "/dashboard/app.js", timeout=30) as resp:
            assert b"/v1/events" in resp.read()  # the installed page, not the source tree's
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
