"""The ``qoper8`` command: start-up refusals with named exit codes, and the client commands."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from qoper8._cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, format_status
from qoper8._daemon import (
    EXIT_ALREADY_RUNNING,
    EXIT_BIND_FAILED,
    EXIT_CONFIG,
    EXIT_START_FAILED,
)
from tests.daemon_support import HANDLERS, REPO, free_port, run_cli, running, write_toml

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.daemon_support import Daemon

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("cli")) as d:
        yield d


# ==================================================================== serve refuses to start


def test_bad_config_file_exits_with_the_config_code_naming_the_setting(tmp_path: Path) -> None:
    conf = write_toml(tmp_path / "q.toml", [f'worker = "{HANDLERS}"', 'children = "many"'])
    done = run_cli("serve", "--config", str(conf))
    assert done.returncode == EXIT_CONFIG
    assert "children" in done.stderr
    assert "config file" in done.stderr


def test_unknown_setting_in_the_file_is_named(tmp_path: Path) -> None:
    conf = write_toml(tmp_path / "q.toml", [f'worker = "{HANDLERS}"', "chidlren = 2"])
    done = run_cli("serve", "--config", str(conf))
    assert done.returncode == EXIT_CONFIG
    assert "chidlren" in done.stderr


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    conf = write_toml(tmp_path / "q.toml", ["worker = "])
    done = run_cli("serve", "--config", str(conf))
    assert (done.returncode, "not valid TOML" in done.stderr) == (EXIT_CONFIG, True)
    done = run_cli("serve", "--config", str(tmp_path / "missing.toml"))
    assert (done.returncode, "cannot read" in done.stderr) == (EXIT_CONFIG, True)


def test_bad_environment_variable_is_named() -> None:
    done = run_cli("serve", "--worker", HANDLERS, env={"QOPER8_PORT": "eighty"})
    assert done.returncode == EXIT_CONFIG
    assert "port (environment)" in done.stderr


def test_non_loopback_bind_without_a_token_is_refused() -> None:
    done = run_cli("serve", "--worker", HANDLERS, "--host", "0.0.0.0")
    assert done.returncode == EXIT_CONFIG
    assert "token" in done.stderr


def test_missing_worker_is_a_config_error() -> None:
    done = run_cli("serve", env={"QOPER8_WORKER": ""})
    assert done.returncode == EXIT_CONFIG
    assert "worker" in done.stderr


def test_worker_module_that_fails_to_import_exits_start_failed(tmp_path: Path) -> None:
    done = run_cli(
        "serve", "--worker", "tests.no_such_module:worker", "--children", "1", "--port", "0"
    )
    assert done.returncode == EXIT_START_FAILED, done.stderr
    assert "no_such_module" in done.stderr


def test_address_in_use_exits_bind_failed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--worker", HANDLERS, "--children", "1", "--port", str(port))
    assert done.returncode == EXIT_BIND_FAILED, done.stderr
    assert "cannot listen" in done.stderr


def test_pidfile_of_a_live_process_exits_already_running(tmp_path: Path) -> None:
    pidfile = tmp_path / "q.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    done = run_cli("serve", "--worker", HANDLERS, "--children", "1", "--pidfile", str(pidfile))
    assert done.returncode == EXIT_ALREADY_RUNNING, done.stderr
    assert pidfile.read_text().strip() == str(os.getpid())


def test_python_m_qoper8_and_the_script_are_the_same_program() -> None:
    done = run_cli("--version")
    assert (done.returncode, done.stdout.strip()) == (0, "qoper8 0.1.0")
    script = Path(sys.executable).parent / "qoper8"
    if script.exists():
        import subprocess

        out = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, check=False, cwd=REPO
        )
        assert out.stdout == done.stdout


# ==================================================================== client commands


def test_status_prints_a_table_of_children(daemon: Daemon) -> None:
    done = run_cli("status", "--url", daemon.url)
    assert done.returncode == EXIT_OK, done.stderr
    for child in daemon.status()["children"]:
        assert str(child["pid"]) in done.stdout
    assert "STATE" in done.stdout
    assert "queue:" in done.stdout
    assert "totals:" in done.stdout


def test_status_json_and_url_from_the_environment(daemon: Daemon) -> None:
    done = run_cli("status", "--json", env={"QOPER8_URL": daemon.url})
    assert done.returncode == EXIT_OK, done.stderr
    assert orjson.loads(done.stdout)["pid"] == daemon.pid


def test_submit_prints_the_result(daemon: Daemon) -> None:
    done = run_cli("submit", '{"type": "add", "a": 20, "b": 22}', "--url", daemon.url)
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, "42")
    done = run_cli("submit", "-", "--url", daemon.url, stdin='{"type": "echo", "value": "hi"}')
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, '"hi"')


def test_submit_errors_exit_non_zero(daemon: Daemon) -> None:
    done = run_cli("submit", '{"type": "fail"}', "--url", daemon.url)
    assert done.returncode == EXIT_FAILED
    assert "JobFailed" in done.stderr
    done = run_cli("submit", "{oops", "--url", daemon.url)
    assert done.returncode == EXIT_USAGE
    done = run_cli("submit", "[1]", "--url", daemon.url)
    assert done.returncode == EXIT_USAGE


def test_resize_and_reload_commands(daemon: Daemon) -> None:
    done = run_cli("resize", "+1", "--url", daemon.url)
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, "children: 3")
    done = run_cli("resize", "2", "--url", daemon.url)
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, "children: 2")
    done = run_cli("resize", "two", "--url", daemon.url)
    assert done.returncode == EXIT_USAGE
    generation = daemon.status()["generation"]
    done = run_cli("reload", "--url", daemon.url)
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, f"generation: {generation + 1}")


def test_unreachable_daemon_exits_unreachable() -> None:
    done = run_cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == EXIT_UNREACHABLE
    assert "cannot reach" in done.stderr


def test_format_status_copes_with_missing_fields() -> None:
    text = format_status({"children": [{"id": 1, "pid": 5, "state": "idle"}]})
    assert "idle" in text
