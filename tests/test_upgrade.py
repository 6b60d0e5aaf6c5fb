"""Upgrades without a refused connection: serving on inherited sockets (``--fd``, systemd's
socket activation), USR2 (a new master takes over the same sockets under load: no refused
connection, no failed request), a failed upgrade, and WINCH (no children, the master stays;
TTIN brings them back)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from qoper8._config_sources import load_config
from qoper8._daemon.daemon import EXIT_BIND_FAILED, EXIT_CONFIG, EXIT_OK
from qoper8._daemon.daemon import Daemon as DaemonMaster
from qoper8._daemon.upgrade import OLDBIN_SUFFIX
from qoper8.errors import ConfigError, TransportError
from tests import conftest
from tests.conftest import new_fifo, pid_alive, release
from tests.daemon_support import (
    HANDLERS,
    REPO,
    Daemon,
    Load,
    qoper8_command,
    run_cli,
    running,
    settled,
    wait_status,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

TOKEN = "upgrade-token"
# After a refused connection a client pauses this long, so a test that fails does not spin.
FAILURE_PAUSE = 0.05


@contextlib.contextmanager
def listening(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A listening socket, as a supervisor (or systemd) hands one to the daemon."""
    sock = socket.socket()
    try:
        sock.bind((host, 0))
        sock.listen(64)
        yield sock
    finally:
        sock.close()


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class FreshConnections:
    """Clients that open a new TCP connection for every request (Connection: close), to
    count refused connections, not only failed requests."""

    def __init__(self, host: str, port: int, concurrency: int = 2) -> None:
        self.host, self.port = host, port
        self.ok = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._one(n)) for n in range(concurrency)]

    async def _one(self, n: int) -> None:
        body = orjson.dumps({"type": "echo", "value": n})
        request = (
            f"POST /v1/submit HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self.failures.append(f"connect: {exc!r}")
                await asyncio.sleep(FAILURE_PAUSE)
                continue
            try:
                writer.write(request)
                async with asyncio.timeout(15):
                    answer = await reader.read()
                if answer.startswith(b"HTTP/1.1 200"):
                    self.ok += 1
                else:
                    self.failures.append(f"answer: {answer[:200]!r}")
            except (OSError, TimeoutError) as exc:
                self.failures.append(f"request: {exc!r}")
            finally:
                writer.close()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


# ==================================================================== USR2


async def test_usr2_under_load_refuses_no_connection_and_fails_no_request(
    tmp_path: Path,
) -> None:
    with running(tmp_path, "--grace", "10", token=TOKEN, children=2) as d:
        old_pid = d.pid
        oldbin = d.pidfile.with_name(d.pidfile.name + OLDBIN_SUFFIX)
        async with asyncio.timeout(45):
            load = Load(d, concurrency=6).start()
            fresh = FreshConnections("127.0.0.1", d.port)
            await load.wait_ok(100)

            d.signal(signal.SIGUSR2)

            async def new_master() -> bool:
                pid = read_pid(d.pidfile)
                return pid is not None and pid != old_pid

            await wait_until(new_master, daemon=d, what="the new master's pidfile")
            new_pid = read_pid(d.pidfile)
            assert new_pid is not None
            # The old master hands over, drains and exits 0; its pidfile goes with it.
            assert await asyncio.to_thread(d.wait_exit, 30) == EXIT_OK
            assert not oldbin.exists()
            served_before = load.ok + fresh.ok
            await load.wait_ok(load.ok + 100)  # the new master serves the same clients

            async with d.client() as client:
                status = await client.status()
            assert status["pid"] == new_pid
            assert fresh.ok > 0
            assert load.ok + fresh.ok > served_before
            await load.stop()
            await fresh.stop()
        assert load.failures == []
        assert fresh.failures == []
        log = d.log_text()
        assert "handing over to it" in log
        os.kill(new_pid, signal.SIGTERM)
        await conftest.wait_until(lambda: not pid_alive(new_pid), timeout=30, what="new master")
        assert not d.pidfile.exists()


async def test_a_failed_upgrade_keeps_the_old_master_and_its_pidfile(tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "start")
    d = Daemon(tmp_path, children=1, token=TOKEN, env={"TEST_QOPER8_START_FIFO": fifo}).start()
    try:
        await release(fifo)  # the old master's child starts
        d.wait_ready()
        oldbin = d.pidfile.with_name(d.pidfile.name + OLDBIN_SUFFIX)
        d.signal(signal.SIGUSR2)
        await release(fifo, "fail")  # the new master's child fails: StartFailed, exit 3

        async def given_up() -> bool:
            return "upgrade failed" in d.log_text() and read_pid(d.pidfile) == d.pid

        await wait_until(given_up, daemon=d, what="the old master to take its pidfile back")
        assert not oldbin.exists()
        assert "exited with code 3" in d.log_text()
        async with d.client() as client:
            assert await client.submit({"type": "echo", "value": 1}) == 1
            assert (await client.status())["pid"] == d.pid
    finally:
        d.stop()
    d.wait_group_gone()


async def test_usr2_on_a_unix_socket_keeps_the_socket_file_for_the_new_master(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.sock"
    d = Daemon(tmp_path, "--unix", str(path), children=1, tcp=False).start()
    d.url = f"unix:{path}"
    try:
        async with asyncio.timeout(30), d.client() as client:

            async def ready() -> bool:
                try:
                    return bool((await client.health())["status"] == "ready")
                except TransportError:
                    return False

            await wait_until(ready, daemon=d, what="ready on the socket")
        # (No idle connection is left open: the old master would wait for it to go.)
        d.signal(signal.SIGUSR2)
        assert await asyncio.to_thread(d.wait_exit, 30) == EXIT_OK
        new_pid = read_pid(d.pidfile)
        assert new_pid is not None
        assert new_pid != d.pid
        async with asyncio.timeout(30), d.client() as client:
            # The old master left the socket file to the new one, which serves on it...
            assert (await client.status())["pid"] == new_pid
            assert await client.submit({"type": "add", "a": 1, "b": 1}) == 2
        # ... and removes it when it stops, as the old one would have.
        os.kill(new_pid, signal.SIGTERM)
        await conftest.wait_until(lambda: not pid_alive(new_pid), timeout=30, what="new master")
        assert not path.exists()
    finally:
        d.stop()
    d.wait_group_gone()


async def test_usr2_needs_the_command_line_to_start_the_new_master(
    caplog: pytest.LogCaptureFixture,
) -> None:
    master = DaemonMaster(load_config(environ={}, overrides={"worker": HANDLERS, "children": 1}))
    caplog.set_level(logging.ERROR, logger="qoper8.daemon")
    await master.actions[signal.SIGUSR2]()
    assert "not started by the qoper8 command" in caplog.text


# ==================================================================== inherited sockets


async def test_fd_serves_on_an_inherited_socket_and_its_backlog_waits_for_it(
    tmp_path: Path,
) -> None:
    with listening() as sock:
        port = sock.getsockname()[1]
        # A client that connects before the daemon runs is queued by the kernel, not refused.
        early = socket.create_connection(("127.0.0.1", port), timeout=30)
        early.sendall(
            f"GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        d = Daemon(
            tmp_path, "--fd", str(sock.fileno()), token=TOKEN, children=1,
            pass_fds=(sock.fileno(),),
        )  # fmt: skip
        d.url = f"http://127.0.0.1:{port}"
        d.start()
        try:
            answer = await asyncio.to_thread(early.recv, 1024)
            assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")), answer
            d.wait_ready()
            async with d.client() as client:
                assert await client.submit({"type": "add", "a": 1, "b": 2}) == 3
                assert (await client.status())["urls"] == [d.url]
        finally:
            early.close()
            d.stop()
        d.wait_group_gone()


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """LISTEN_FDS and LISTEN_PID, sockets from descriptor 3, as systemd passes them."""
    with listening() as sock:
        port = sock.getsockname()[1]
        # systemd sets LISTEN_PID to the service's own pid: exec keeps the pid.
        launcher = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3);"
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1');"
            "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
        )
        d = Daemon(tmp_path, token=TOKEN, children=1, pass_fds=(sock.fileno(),))
        d.url = f"http://127.0.0.1:{port}"
        d.args = ["-c", launcher, str(sock.fileno()), *qoper8_command(*d.args)[1:]]
        with d_started_with_python(d):
            d.wait_ready()
            code, data = d.json("POST", "/v1/submit", {"type": "add", "a": 2, "b": 2})
            assert (code, data) == (200, {"result": 4})
            assert d.status()["urls"] == [d.url]


@contextlib.contextmanager
def d_started_with_python(d: Daemon) -> Iterator[Daemon]:
    """Start ``python ARGS`` (not ``python -m qoper8 ARGS``) in the daemon's place."""
    import subprocess

    with open(d.output, "wb") as out:
        d.proc = subprocess.Popen(
            [sys.executable, *d.args],
            cwd=REPO,
            env=d.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=d.pass_fds,
        )
    try:
        yield d
    finally:
        d.stop()
    d.wait_group_gone()


def test_an_inherited_socket_that_is_not_one_exits_bind_failed(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        done = run_cli("serve", "--worker", HANDLERS, "--children", "1", "--fd", str(r))
    finally:
        os.close(r)
        os.close(w)
    assert done.returncode == EXIT_BIND_FAILED, done.stderr
    assert "cannot listen on descriptors" in done.stderr


def test_an_inherited_public_socket_needs_a_token(tmp_path: Path) -> None:
    import subprocess

    with listening("0.0.0.0") as sock:
        done = subprocess.run(
            qoper8_command("serve", "--worker", HANDLERS, "--children", "1",
                           "--fd", str(sock.fileno())),
            cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
            pass_fds=(sock.fileno(),),
        )  # fmt: skip
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "reachable off this machine" in done.stderr


def test_fd_setting_from_a_flag_a_variable_or_the_file(tmp_path: Path) -> None:
    base: dict[str, Any] = {"worker": HANDLERS}
    assert load_config(environ={}, overrides={**base, "fd": [5]}).fd == (5,)
    assert load_config(environ={"QOPER8_FD": "3,4"}, overrides=base).fd == (3, 4)
    conf = tmp_path / "q.toml"
    conf.write_text(f'worker = "{HANDLERS}"\nfd = 7\n')
    assert load_config(conf, environ={}).fd == (7,)
    with pytest.raises(ConfigError, match="fd"):
        load_config(environ={"QOPER8_FD": "-1"}, overrides=base)
    assert load_config(environ={}, overrides=base).dashboard is True
    assert load_config(environ={}, overrides={**base, "dashboard": False}).dashboard is False


# ==================================================================== WINCH


async def test_winch_retires_every_child_keeps_the_master_and_ttin_brings_them_back(
    tmp_path: Path,
) -> None:
    with running(tmp_path, token=TOKEN, children=2) as d:
        async with asyncio.timeout(30), d.client() as client:
            d.signal(signal.SIGWINCH)
            status = await wait_status(
                client, lambda s: s["children"] == [] and s["paused"], daemon=d,
                what="every child retired",
            )  # fmt: skip
            assert status["target_size"] == 0
            assert d.json("GET", "/v1/health")[1]["status"] == "paused"
            # A job waits for a child rather than fail; the master is still there.
            job = asyncio.create_task(client.submit({"type": "add", "a": 1, "b": 1}, timeout=30))
            await wait_status(client, lambda s: s["queue_length"] == 1, daemon=d, what="queued")
            d.signal(signal.SIGTTIN)  # brings back the size before WINCH, not one child
            assert await job == 2
            await wait_status(client, lambda s: settled(s, 2), daemon=d, what="2 children back")
            assert d.json("GET", "/v1/health")[0] == 200
        assert "paused" in d.log_text()


def test_serve_help_names_the_new_flags_and_signals() -> None:
    done = run_cli("serve", "--help")
    assert done.returncode == 0, done.stderr
    for word in ("--fd N", "--no-dashboard", "WINCH", "USR2"):
        assert word in done.stdout, word


async def test_winch_in_a_terminal_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A terminal sends WINCH when its window is resized: a daemon run in one keeps its
    children (unicorn's rule)."""
    from qoper8._daemon import signal_actions

    master = DaemonMaster(load_config(environ={}, overrides={"worker": HANDLERS, "children": 1}))
    monkeypatch.setattr(signal_actions, "_in_a_terminal", lambda: True)
    caplog.set_level(logging.WARNING, logger="qoper8.daemon")
    await master.pool.start()
    try:
        await master.actions[signal.SIGWINCH]()
        assert master.pool.size == 1
        assert "WINCH ignored" in caplog.text
        monkeypatch.setattr(signal_actions, "_in_a_terminal", lambda: False)
        await master.actions[signal.SIGWINCH]()
        assert master.pool.size == 0
    finally:
        await master.pool.aclose(grace=0)
