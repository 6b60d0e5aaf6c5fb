"""The ``qoper8`` command: start-up refusals with named exit codes, and the client commands."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from qoper8._daemon.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    format_status,
    main,
)
from qoper8._daemon.daemon import (
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


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``qoper8 ARGS`` in this process (the client commands and start-up refusals that
    happen before any daemon runs), returning (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("cli")) as d:
        yield d


# ==================================================================== serve refuses to start


def test_bad_config_file_exits_with_the_config_code_naming_the_setting(tmp_path: Path) -> None:
    conf = write_toml(tmp_path / "q.toml", [f'worker = "{HANDLERS}"', 'children = "many"'])
    done = run_cli("serve", "--config", str(conf))  # the real command, as an operator runs it
    assert done.returncode == EXIT_CONFIG
    assert "children" in done.stderr
    assert "config file" in done.stderr


def test_unknown_setting_in_the_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_toml(tmp_path / "q.toml", [f'worker = "{HANDLERS}"', "chidlren = 2"])
    code, _, err = cli(capsys, "serve", "--config", str(conf))
    assert code == EXIT_CONFIG
    assert "chidlren" in err


def test_toml_syntax_error_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_toml(tmp_path / "q.toml", ["worker = "])
    code, _, err = cli(capsys, "serve", "--config", str(conf))
    assert (code, "not valid TOML" in err) == (EXIT_CONFIG, True)
    code, _, err = cli(capsys, "serve", "--config", str(tmp_path / "missing.toml"))
    assert (code, "cannot read" in err) == (EXIT_CONFIG, True)


def test_bad_environment_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QOPER8_PORT", "eighty")
    code, _, err = cli(capsys, "serve", "--worker", HANDLERS)
    assert code == EXIT_CONFIG
    assert "port (environment)" in err


def test_non_loopback_bind_without_a_token_is_refused() -> None:
    done = run_cli("serve", "--worker", HANDLERS, "--host", "0.0.0.0")
    assert done.returncode == EXIT_CONFIG
    assert "token" in done.stderr
    assert "0.0.0.0" in done.stderr


def test_missing_worker_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QOPER8_WORKER", raising=False)
    code, _, err = cli(capsys, "serve")
    assert code == EXIT_CONFIG
    assert "worker" in err


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
    done = run_cli("status", "--url", daemon.url)  # the real command once
    assert done.returncode == EXIT_OK, done.stderr
    for child in daemon.status()["children"]:
        assert str(child["pid"]) in done.stdout
    assert "STATE" in done.stdout
    assert "queue:" in done.stdout
    assert "totals:" in done.stdout


def test_status_json_and_url_from_the_environment(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QOPER8_URL", daemon.url)
    code, out, err = cli(capsys, "status", "--json")
    assert code == EXIT_OK, err
    assert orjson.loads(out)["pid"] == daemon.pid


def test_submit_prints_the_result(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "submit", '{"type": "add", "a": 20, "b": 22}', "--url", daemon.url)
    assert (code, out.strip()) == (EXIT_OK, "42")
    done = run_cli("submit", "-", "--url", daemon.url, stdin='{"type": "echo", "value": "hi"}')
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, '"hi"')


def test_submit_errors_exit_non_zero(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "submit", '{"type": "fail"}', "--url", daemon.url)
    assert code == EXIT_FAILED
    assert "JobFailed" in err
    assert cli(capsys, "submit", "{oops", "--url", daemon.url)[0] == EXIT_USAGE
    assert cli(capsys, "submit", "[1]", "--url", daemon.url)[0] == EXIT_USAGE


def test_resize_and_reload_commands(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "resize", "+1", "--url", daemon.url)
    assert (code, out.strip()) == (EXIT_OK, "children: 3")
    code, out, _ = cli(capsys, "resize", "2", "--url", daemon.url)
    assert (code, out.strip()) == (EXIT_OK, "children: 2")
    assert cli(capsys, "resize", "two", "--url", daemon.url)[0] == EXIT_USAGE
    generation = daemon.status()["generation"]
    code, out, _ = cli(capsys, "reload", "--url", daemon.url)
    assert (code, out.strip()) == (EXIT_OK, f"generation: {generation + 1}")


def test_unreachable_daemon_exits_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_UNREACHABLE
    assert "cannot reach" in err


def test_format_status_copes_with_missing_fields() -> None:
    text = format_status({"children": [{"id": 1, "pid": 5, "state": "idle"}]})
    assert "idle" in text
