"""Helpers for the daemon's tests: ``qoper8 serve`` as a real subprocess in its own process
group, and bounded polling of its status for what nothing can notify us about.

Whatever starts a daemon also ends it: ``Daemon.stop()`` sends TERM to the whole group, then
KILL, so no child outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp.test_utils import TestServer
from aiohttp.web import AppRunner

import qoper8

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from qoper8._daemon.http_api import HttpApi

REPO = Path(__file__).resolve().parent.parent
HANDLERS = "tests.daemon_handlers:worker"
# Guards, not expectations: a daemon is ready in about a second on a quiet machine.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
POLL = 0.02
READY = ("idle", "busy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def qoper8_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "qoper8", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m qoper8 ARGS`` to its end (for commands that exit by themselves)."""
    return subprocess.run(
        qoper8_command(*args),
        cwd=REPO,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Daemon:
    """One ``qoper8 serve`` subprocess, started in its own session (process group)."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        children: int = 2,
        worker: str | None = HANDLERS,
        env: dict[str, str] | None = None,
        tcp: bool = True,
        token: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.tmp = tmp
        self.port = free_port() if tcp else 0
        self.pidfile = tmp / "qoper8.pid"
        self.log = tmp / "qoper8.log"
        self.output = tmp / "serve.out"
        self.token = token
        self.url = f"http://127.0.0.1:{self.port}"
        # worker=None: the arguments name what it runs (--role, or a config file).
        pool = ["--worker", worker, "--children", str(children)] if worker is not None else []
        self.args = [
            "serve",
            *pool,
            "--port",
            str(self.port),
            "--pidfile",
            str(self.pidfile),
            "--log-file",
            str(self.log),
            *(["--token", token] if token else []),
            *args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.pass_fds = tuple(pass_fds)  # listening sockets for --fd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Daemon:
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                qoper8_command(*self.args),
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self.pass_fds,
            )
        return self

    def client(self, **kwargs: Any) -> qoper8.Client:
        kwargs.setdefault("token", self.token)
        return qoper8.Client(self.url, **kwargs)

    def describe(self) -> str:
        """What went wrong, for a failing assertion: exit code and the last log lines."""
        code = self.proc.poll() if self.proc is not None else None
        tail = []
        for path in (self.log, self.output):
            with contextlib.suppress(OSError):
                tail += path.read_text(errors="replace").splitlines()[-25:]
        return f"daemon exit code {code}; last lines:\n" + "\n".join(tail)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One blocking request; returns (status, headers, body) for any status."""
        hdrs = dict(headers or {})
        if self.token and "Authorization" not in hdrs:
            hdrs["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        raw = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        status, _, data = self.http(method, path, raw, **kw)
        return status, json.loads(data) if data else None

    def status(self) -> dict[str, Any]:
        code, data = self.json("GET", "/v1/status")
        assert code == 200, (code, data)
        assert isinstance(data, dict)
        return data

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Daemon:
        """Poll ``/v1/health`` until it says ready; fail at once if the daemon exits."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited before it was ready: {self.describe()}")
            with contextlib.suppress(OSError):
                code, _, _ = self.http("GET", "/v1/health")
                if code == 200:
                    return self
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready within {timeout}s: {self.describe()}")
            time.sleep(POLL)

    def group_alive(self) -> list[int]:
        """Live (not zombie) processes of the daemon's process group: master and children."""
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(") ", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == self.pid:
                alive.append(int(entry.name))
        return alive

    def wait_group_gone(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait until no process of the group is left (no stray children)."""
        deadline = time.monotonic() + timeout
        while left := self.group_alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"processes {left} outlived the daemon: {self.describe()}")
            time.sleep(POLL)

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s: {self.describe()}") from None

    def stop(self) -> None:
        """TERM the whole process group, then KILL it if it lingers."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def running(tmp: Path, *args: str, **kwargs: Any) -> Iterator[Daemon]:
    """A ready daemon for the ``with`` block, stopped (group TERM, then KILL) after it."""
    daemon = Daemon(tmp, *args, **kwargs).start()
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()
    daemon.wait_group_gone()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    *,
    daemon: Daemon,
    timeout: float = 15.0,
    what: str = "condition",
) -> None:
    """Poll an async ``predicate`` (for what nothing notifies us about), reporting the
    daemon's state and log on failure."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}: {daemon.describe()}"
            )
        await asyncio.sleep(POLL)


async def wait_status(
    client: qoper8.Client,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    daemon: Daemon,
    timeout: float = 15.0,
    what: str = "status",
) -> dict[str, Any]:
    """Poll ``/v1/status`` until ``predicate`` holds for it; return that status."""
    last: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal last
        last = await client.status()
        return predicate(last)

    try:
        await wait_until(check, daemon=daemon, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {last}") from None
    return last


def ready_children(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Children of the current generation that are idle or busy."""
    return [
        c
        for c in status["children"]
        if c["generation"] == status["generation"] and c["state"] in ("idle", "busy")
    ]


def settled(status: dict[str, Any], size: int, generation: int | None = None) -> bool:
    """Exactly ``size`` children, all ready, all of the current (or given) generation."""
    gen = status["generation"] if generation is None else generation
    return (
        status["generation"] == gen
        and status["target_size"] == size
        and len(status["children"]) == size
        and all(
            c["generation"] == gen and c["state"] in ("idle", "busy") for c in status["children"]
        )
    )


class Load:
    """Concurrent clients submitting ``echo`` in a loop until stopped; counts every outcome."""

    def __init__(self, daemon: Daemon, concurrency: int = 8) -> None:
        self.daemon = daemon
        self.concurrency = concurrency
        self.ok = 0
        self.failures: list[BaseException] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _one(self, n: int) -> None:
        async with self.daemon.client() as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    value = await client.submit({"type": "echo", "value": [n, i]}, timeout=10)
                    assert value == [n, i], value
                    self.ok += 1
                except Exception as exc:
                    self.failures.append(exc)

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._one(n)) for n in range(self.concurrency)]
        return self

    async def wait_ok(self, count: int) -> None:
        async def enough() -> bool:
            return self.ok >= count or bool(self.failures)

        await wait_until(enough, daemon=self.daemon, what=f"{count} completed requests")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


class _DaemonLikeServer(TestServer):
    def __init__(self, api: HttpApi) -> None:
        super().__init__(api.make_app())
        self._options = api.runner_options()

    async def _make_runner(self, **kwargs: Any) -> AppRunner:
        return AppRunner(self.app, **{**kwargs, **self._options})


def serve_like_the_daemon(api: HttpApi) -> TestServer:
    """An aiohttp test server for ``api``'s app, served as the daemon serves it (the same
    runner options: loggers, cancellation)."""
    return _DaemonLikeServer(api)


def write_toml(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
