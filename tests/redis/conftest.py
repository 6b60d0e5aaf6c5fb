"""Fixtures for the Redis tests: the machine's Redis (``redis_url``), private redis-servers
that tests may kill and restart (``redis_server``), and qoper8 hosts in their own process
groups (``spawn_host``).

Without a Redis on 127.0.0.1:6379 the real-server tests are skipped locally and fail when
``CI=true``. Each test uses its own queue name in a database of its own, so runs can share
the server with other users of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
import redis

import qoper8
from qoper8._redis import RedisConsumer
from qoper8._redis import consumer as consumer_module

from .fakes import FakeWire

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# A database of our own on the shared server: tests never see other users' keys.
REDIS_DB = 9
ROOT = Path(__file__).resolve().parents[2]
HANDLERS = "tests.redis.redis_handlers:worker"


def _reachable(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        return str(exc)
    return None


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_base_url() -> str:
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    err = _reachable(url)
    if err is not None:
        _missing(f"no Redis server at {REDIS_HOST}:{REDIS_PORT} ({err}); start one to run these")
    return url


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeServer:
    """A fakeredis server (with Lua) that every RedisConsumer of the test connects to."""
    srv = fakeredis.FakeServer()
    # RedisConsumer opens the Wires of its own module
    monkeypatch.setattr(consumer_module, "Wire", lambda url: FakeWire(srv))
    return srv


@pytest.fixture
def redis_url(redis_base_url: str) -> str:
    """The machine's real Redis (127.0.0.1:6379, our own database)."""
    return redis_base_url


@pytest.fixture
def queue_name(redis_base_url: str) -> Iterator[str]:
    """A fresh rq queue name; its keys are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(redis.RedisError, OSError):
        client = redis.Redis.from_url(redis_base_url)
        forget_queue(client, name)
        client.close()


def forget_queue(client: redis.Redis, name: str) -> None:
    """Delete a queue's keys and those of the jobs it knows (job keys do not name it)."""
    members: list[Any] = []
    for kind in ("finished", "failed", "wip"):
        members += client.zrange(f"rq:{kind}:{name}", 0, -1)
    members += client.lrange(f"rq:queue:{name}", 0, -1)
    ids = {bytes(m).decode().split(":")[0] for m in members}
    keys = [f"rq:{k}:{i}" for i in ids for k in ("job", "results", "executions")]
    keys += [f"qoper8:msgs:{i}" for i in ids]
    keys += [bytes(k).decode() for k in client.scan_iter(f"*{name}*")]
    if keys:
        client.delete(*keys)
    client.srem("rq:queues", f"rq:queue:{name}")


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((REDIS_HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A private redis-server in its own process group, on a free port, no persistence."""

    port: int
    extra: list[str] = field(default_factory=list)
    password: str | None = None
    tls: tuple[str, str] | None = None  # (certificate, key) files: serve rediss:// only
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}{REDIS_HOST}:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://{auth}{REDIS_HOST}:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            _missing("redis-server is not installed")
            return
        args = [exe, "--port", str(self.port), "--bind", REDIS_HOST, "--save", ""]
        if self.tls is not None:
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls[0], "--tls-key-file", self.tls[1]]
            args += ["--tls-auth-clients", "no"]
        args += ["--appendonly", "no", *self.extra]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while _reachable(self.url) is not None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.01)  # bounded polling for the port: nothing can notify us

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server(password=None, extra=[])`` starts a private server."""
    servers: list[RedisServer] = []

    def start(
        *,
        password: str | None = None,
        extra: list[str] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> RedisServer:
        server = RedisServer(free_port(), extra or [], password, tls)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@dataclass
class Host:
    """A qoper8 host (``python -m tests.redis.host``) in its own process group."""

    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the whole host: master and children, like a power cut."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)


@pytest.fixture
async def spawn_host() -> AsyncIterator[Callable[..., Awaitable[Host]]]:
    """Factory: ``await spawn_host(url, queue, children=2, lease=30.0)`` returns once the
    host printed READY. Teardown sends TERM, then KILL, to each host's process group."""
    hosts: list[Host] = []

    async def spawn(url: str, queue: str, *, children: int = 2, lease: float = 30.0) -> Host:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.redis.host",
            url,
            queue,
            str(children),
            str(lease),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        host = Host(proc)
        hosts.append(host)
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        if not line.startswith(b"READY"):
            raise RuntimeError(f"host did not start: {line!r}")
        return host

    yield spawn
    for host in hosts:
        host.terminate()
    for host in hosts:
        try:
            async with asyncio.timeout(10):
                await host.proc.wait()
        except TimeoutError:
            host.kill()
            await host.proc.wait()
        host.kill()  # anything left in the group (children of a killed master)


@contextlib.asynccontextmanager
async def serving(
    url: str, queue: str, *, children: int = 2, lease: float = 30.0, **kw: Any
) -> AsyncIterator[tuple[qoper8.Pool, RedisConsumer]]:
    """A pool and a consumer feeding it from ``queue``, stopped on exit."""
    async with qoper8.Pool(HANDLERS, children=children) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue, lease=lease, **kw)
        task = asyncio.create_task(consumer.run())
        try:
            yield pool, consumer
        finally:
            await consumer.stop()
            await task
