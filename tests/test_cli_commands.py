"""The command line a gunicorn or celery user expects: help, -b/-w/-c, ``stop``, ``health``,
the daemon's address and token from its config file, typo hints, and exit codes that tell
"unauthorized" from "unreachable"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from qoper8._daemon.cli import console_main
from qoper8._daemon.cli_commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    daemon_url,
)
from qoper8._daemon.daemon import EXIT_CONFIG
from tests.conftest import new_fifo, release
from tests.daemon_support import (
    HANDLERS,
    Daemon,
    free_port,
    run_cli,
    running,
    write_toml,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("cli2"), children=1, token="tok") as d:
        yield d


def without(args: list[str], *flags: str) -> list[str]:
    """``args`` without the given flags and their values."""
    out = list(args)
    for flag in flags:
        i = out.index(flag)
        del out[i : i + 2]
    return out


# ==================================================================== help


def test_no_arguments_prints_the_help_and_exits_2() -> None:
    done = run_cli()
    assert done.returncode == EXIT_USAGE
    assert "usage: qoper8" in done.stderr
    for command in ("serve", "status", "health", "submit", "resize", "reload", "stop"):
        assert command in done.stderr


def test_serve_help_shows_defaults_required_variables_signals_and_exit_codes() -> None:
    done = run_cli("serve", "--help")
    text = " ".join(done.stdout.split())  # argparse wraps lines
    assert done.returncode == 0
    for shown in (
        "-w N, --children N, --workers N",
        "-b ADDR, --bind ADDR",
        "-c FILE, --config FILE",
        "(default: 8765)",
        "(default: 127.0.0.1;",
        "(default: 10M)",
        "(required: here, QOPER8_WORKER or the config file)",
        "QOPER8_<SETTING>",
        "QOPER8_CHILDREN",
        "shutdown_timeout",
        "HUP reload the settings",
        "TTIN, TTOU",
        "USR1 reopen the log file",
        "3 the worker module failed to start",
        "5 the pidfile names a running process",
        "--max-start-failures N",
        "--public-health",
        "--access-log",
        "--log-format FORMAT",
    ):
        assert shown in text, shown


def test_an_unknown_flag_suggests_the_closest() -> None:
    done = run_cli("serve", "--worker", HANDLERS, "--chidren", "2")
    assert done.returncode == EXIT_USAGE
    assert "unrecognized arguments: --chidren 2 (did you mean '--children'?)" in done.stderr


def test_unknown_qoper8_variables_are_a_warning_naming_the_closest_setting() -> None:
    done = run_cli("serve", "--worker", HANDLERS, "--port", "eighty", env={"QOPER8_CHILDERN": "2"})
    assert done.returncode == EXIT_CONFIG  # the bad port; the variable only warns
    assert "QOPER8_CHILDERN is not a qoper8 setting and is ignored" in done.stderr
    assert "(did you mean QOPER8_CHILDREN?)" in done.stderr


def test_max_start_failures_is_a_flag() -> None:
    done = run_cli("serve", "--worker", HANDLERS, "--max-start-failures", "0")
    assert done.returncode == EXIT_CONFIG
    assert "max_start_failures (command line)" in done.stderr


def test_byte_sizes_take_units_in_flags() -> None:
    done = run_cli("serve", "--worker", HANDLERS, "--max-body-bytes", "10 parsecs")
    assert done.returncode == EXIT_CONFIG
    assert "max_body_bytes (command line): '10 parsecs' is not a size" in done.stderr


# ==================================================================== -b, -w, -c


async def test_bind_workers_and_config_short_flags(tmp_path: Path) -> None:
    conf = write_toml(tmp_path / "q.toml", ['token = "from-the-file"', "max_body_bytes = '1K'"])
    d = Daemon(tmp_path, children=3)
    d.args = [
        *without(d.args, "--port", "--children"),
        "-b", f"127.0.0.1:{d.port}", "-w", "1", "-c", str(conf),
    ]  # fmt: skip
    d.token = "from-the-file"
    d.start()
    try:
        d.wait_ready()
        status = d.status()
        assert len(status["children"]) == 1
        assert status["urls"] == [d.url]
        code, body = d.json("POST", "/v1/submit", {"type": "echo", "value": "x" * 2000})
        assert (code, body["error"]["type"]) == (413, "InvalidAction")  # 1K from the file
    finally:
        d.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_bind_takes_an_ipv6_address_in_brackets(tmp_path: Path) -> None:
    d = Daemon(tmp_path, children=1)
    d.args = [*without(d.args, "--port"), "--bind", f"[::1]:{d.port}"]
    d.url = f"http://[::1]:{d.port}"
    d.start()
    try:
        d.wait_ready()
        assert d.status()["urls"] == [d.url]
    finally:
        d.stop()


def test_status_health_and_stop_read_the_daemons_config_file(tmp_path: Path) -> None:
    sock = tmp_path / "q.sock"
    pidfile = tmp_path / "from-config.pid"
    conf = write_toml(
        tmp_path / "q.toml",
        [
            f'worker = "{HANDLERS}"',
            "children = 1",
            f'bind = "unix:{sock}"',
            'token = "file-token"',
            f'pidfile = "{pidfile}"',
            "grace = 5",
        ],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "qoper8", "serve", "-c", str(conf)],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        health = None
        for _ in range(300):  # bounded: the first answer comes within a few seconds
            health = run_cli("health", "-c", str(conf))
            if health.returncode == EXIT_OK:
                break
            assert proc.poll() is None, "the daemon exited"
        assert health is not None
        assert (health.returncode, health.stdout.strip()) == (
            EXIT_OK,
            "ready (1 of 1 child ready)",
        )
        status = run_cli("status", "--config", str(conf))
        assert status.returncode == EXIT_OK, status.stderr
        assert str(proc.pid) in status.stdout
        assert "1 child (target 1)" in status.stdout
        wrong = run_cli("status", "-c", str(conf), "--token", "not-it")  # a flag wins
        assert wrong.returncode == EXIT_FAILED
        stop = run_cli("stop", "-c", str(conf))
        assert (stop.returncode, stop.stdout.strip()) == (
            EXIT_OK,
            f"qoper8 stop: the daemon (pid {proc.pid}) stopped",
        )
        assert proc.poll() is not None  # gone when stop returned
        assert not pidfile.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(15)


# ==================================================================== stop


def test_stop_terms_the_daemon_and_waits_until_it_is_gone(tmp_path: Path) -> None:
    d = Daemon(tmp_path, children=1).start()
    try:
        d.wait_ready()
        done = run_cli("stop", "--pidfile", str(d.pidfile))
        assert done.returncode == EXIT_OK, done.stderr
        assert (d.proc is not None and d.proc.poll() is not None) or d.wait_exit(5) == 0
        assert "SIGTERM" in d.log_text()
        d.wait_group_gone()
    finally:
        d.stop()


def test_stop_without_a_daemon(tmp_path: Path) -> None:
    missing = run_cli("stop", "--pidfile", str(tmp_path / "none.pid"))
    assert missing.returncode == EXIT_FAILED
    assert "no daemon to stop" in missing.stderr
    stale = tmp_path / "stale.pid"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale.write_text(f"{child.pid}\n")
    done = run_cli("stop", "--pidfile", str(stale))
    assert done.returncode == EXIT_FAILED
    assert "not a running qoper8" in done.stderr
    mine = tmp_path / "mine.pid"
    mine.write_text(f"{os.getpid()}\n")  # pytest is running, but it is not qoper8
    assert run_cli("stop", "--pidfile", str(mine)).returncode == EXIT_FAILED
    usage = run_cli("stop")
    assert usage.returncode == EXIT_USAGE
    assert "--pidfile" in usage.stderr


# ==================================================================== health, tokens, resize


def test_health_exits_0_when_ready_and_1_when_unreachable(daemon: Daemon) -> None:
    ready = run_cli("health", "--url", daemon.url, env={"QOPER8_TOKEN": "tok"})
    assert (ready.returncode, ready.stdout.strip()) == (EXIT_OK, "ready (1 of 1 child ready)")
    gone = run_cli("health", "--url", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == EXIT_FAILED
    assert "cannot reach" in gone.stderr


async def test_health_exits_1_while_starting(tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "start")
    d = Daemon(tmp_path, children=1, env={"TEST_QOPER8_START_FIFO": fifo}).start()
    try:
        done = None
        for _ in range(300):  # bounded: until it listens
            done = run_cli("health", "--url", d.url)
            if "starting" in done.stdout:
                break
        assert done is not None
        assert (done.returncode, done.stdout.strip()) == (
            EXIT_FAILED,
            "starting (0 of 1 child ready)",
        )
        await release(fifo)
        d.wait_ready()
    finally:
        d.stop()


def test_a_wrong_token_exits_1_unauthorized_not_unreachable(daemon: Daemon) -> None:
    for command in (["status"], ["submit", '{"type": "echo"}'], ["health"]):
        done = run_cli(*command, "--url", daemon.url, "--token", "wrong")
        assert done.returncode == EXIT_FAILED, command
        assert "unauthorized" in done.stderr
    missing = run_cli("status", "--url", daemon.url)
    assert (missing.returncode, "unauthorized" in missing.stderr) == (EXIT_FAILED, True)
    gone = run_cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == EXIT_UNREACHABLE


def test_resize_beyond_four_children_per_cpu_needs_force(daemon: Daemon) -> None:
    many = 4 * (os.cpu_count() or 1) + 1
    done = run_cli("resize", str(many), "--url", daemon.url, "--token", "tok")
    assert done.returncode == EXIT_FAILED
    assert "--force" in done.stderr
    for size in ("0", "1025"):
        done = run_cli("resize", size, "--force", "--url", daemon.url, "--token", "tok")
        assert done.returncode == EXIT_FAILED
        assert "ConfigError" in done.stderr
    assert daemon.status()["target_size"] == 1


# ==================================================================== the console script


def test_the_console_script_puts_the_working_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["/venv/bin", *sys.path[1:]])
    monkeypatch.setattr(sys, "argv", ["qoper8", "--version"])
    with pytest.raises(SystemExit) as exited:
        console_main()
    assert exited.value.code == 0
    assert sys.path[0] == str(tmp_path)


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "http://127.0.0.1:8765"),
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),
        ({"host": "::", "port": 9000}, "http://[::1]:9000"),
        ({"host": "::1"}, "http://[::1]:8765"),
        ({"host": "example.org", "port": "80"}, "http://example.org:80"),
        ({"unix": "/run/q.sock", "port": 1}, "unix:/run/q.sock"),
    ],
)
def test_the_url_a_client_uses_for_a_daemon(settings: dict[str, object], url: str) -> None:
    assert daemon_url(settings) == url
