"""Start-up is not "closed": a submit that reaches the daemon before its children are ready
is held until they are (within the job's deadline), never answered PoolClosed.

The children block in their start hook on a FIFO the test writes to (``release``), so each
test decides when the start-up ends, and how.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.http_api import HttpApi
from qoper8.errors import PoolClosed, StartFailed, TransportError
from tests.conftest import new_fifo, release
from tests.conftest import wait_until as wait_until_true
from tests.daemon_support import HANDLERS, Daemon, serve_like_the_daemon, wait_status, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

ADD = {"type": "add", "a": 1, "b": 2}


@pytest.fixture
def starting(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    """A daemon of one child that blocks in its start hook until ``release(fifo)``."""
    fifo = new_fifo(tmp_path, "start")
    d = Daemon(tmp_path, children=1, env={"TEST_QOPER8_START_FIFO": fifo}).start()
    try:
        yield d, fifo
    finally:
        d.stop()
    d.wait_group_gone()


async def wait_starting(d: Daemon, client: qoper8.Client) -> None:
    async def says_starting() -> bool:
        try:
            return bool((await client.health())["status"] == "starting")
        except TransportError:
            return False  # not listening yet

    await wait_until(says_starting, daemon=d, what="health to say starting")


async def test_a_submit_during_start_up_is_held_until_the_children_are_ready(
    starting: tuple[Daemon, str],
) -> None:
    d, fifo = starting
    async with d.client() as client:
        await wait_starting(d, client)
        job = asyncio.create_task(client.submit(ADD))
        await wait_status(client, lambda s: s["held"] == 1, daemon=d, what="a held submit")
        assert not job.done()
        assert (await client.health())["status"] == "starting"
        await release(fifo)
        assert await job == 3
        assert (await client.health())["status"] == "ready"
        assert (await client.status())["held"] == 0


async def test_a_deadline_that_passes_during_start_up_is_503_starting(
    starting: tuple[Daemon, str],
) -> None:
    d, fifo = starting
    async with d.client() as client:
        await wait_starting(d, client)
        code, headers, body = await asyncio.to_thread(
            d.http, "POST", "/v1/submit", json.dumps(ADD).encode(), {"Qoper8-Timeout": "0.2"}
        )
        assert (code, json.loads(body)["error"]["type"]) == (503, "Starting"), body
        assert headers["Retry-After"] == "1"
        with pytest.raises(TransportError, match="still starting"):
            await client.submit(ADD, timeout=0.2)
        await release(fifo)
        assert await client.submit(ADD) == 3


async def test_a_start_up_that_fails_answers_held_submits_start_failed(
    starting: tuple[Daemon, str],
) -> None:
    d, fifo = starting
    async with d.client() as client:
        await wait_starting(d, client)
        job = asyncio.create_task(client.submit(ADD))
        await wait_status(client, lambda s: s["held"] == 1, daemon=d, what="a held submit")
        await release(fifo, "fail")
        with pytest.raises(StartFailed, match="the test failed this start"):
            await job
    assert d.wait_exit() == 3


async def test_term_during_start_up_stops_at_once_and_answers_held_submits(
    starting: tuple[Daemon, str],
) -> None:
    d, _ = starting
    async with d.client() as client:
        await wait_starting(d, client)
        job = asyncio.create_task(client.submit(ADD))
        await wait_status(client, lambda s: s["held"] == 1, daemon=d, what="a held submit")
        d.signal(signal.SIGTERM)
        with pytest.raises(PoolClosed, match="stopped while it was starting"):
            await job
    assert d.wait_exit() == 0
    assert "SIGTERM while the children were starting" in d.log_text()


class _Starting:
    """The daemon's side of the API before ``pool.start()`` was even called."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.draining = False
        self.default_timeout: float | None = None

    def info(self) -> dict[str, Any]:
        return {}

    def redis_state(self) -> dict[str, Any] | None:
        return None

    async def wait_started(self) -> None:
        await self.started.wait()

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        raise AssertionError("not used")

    async def reload(self) -> int:
        raise AssertionError("not used")


async def test_a_submit_before_the_pool_start_is_even_called_is_held() -> None:
    """The window between listening and ``pool.start()``: the pool is NEW (its own submit
    would say "not started"); the API waits on the daemon's event, not on the pool."""
    pool = qoper8.Pool(HANDLERS, children=1)
    control = _Starting()
    api = HttpApi(pool, control, token=None, max_body_bytes=1024)
    async with TestClient(serve_like_the_daemon(api)) as http:
        answer = asyncio.create_task(http.post("/v1/submit", json=ADD))

        await wait_until_true(lambda: api.held == 1, what="a held submit")
        try:
            await pool.start()
            control.started.set()
            response = await answer
            assert (response.status, await response.json()) == (200, {"result": 3})
        finally:
            await pool.aclose()
