"""``qoper8.Client``: the pool's ``submit()`` over the daemon, with the same typed errors."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

import qoper8
from qoper8.errors import (
    ChildDied,
    InvalidAction,
    JobFailed,
    JobTimeout,
    PoolClosed,
    QueueFull,
    TransportError,
)
from tests.daemon_support import (
    HANDLERS,
    Daemon,
    free_port,
    running,
    settled,
    wait_status,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


class Add(BaseModel):
    type: str = "add"
    a: int
    b: int


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running(tmp_path_factory.mktemp("client")) as d:
        yield d


@pytest.fixture(params=["pool", "client"])
async def submitter(request: pytest.FixtureRequest, daemon: Daemon) -> AsyncIterator[Any]:
    """The same application code against an in-process pool and against the daemon."""
    if request.param == "pool":
        async with qoper8.Pool(HANDLERS, children=1) as pool:
            yield pool
    else:
        async with daemon.client() as client:
            yield client


async def test_results_and_typed_errors_are_the_same_as_the_pool(
    submitter: Any, tmp_path: Path
) -> None:
    assert await submitter.submit({"type": "add", "a": 1, "b": 2}) == 3
    assert await submitter.submit(Add(a=2, b=2)) == 4
    assert await submitter.submit({"type": "echo", "value": {"x": [1, None]}}) == {"x": [1, None]}
    with pytest.raises(InvalidAction):
        await submitter.submit({"type": "no.such.type"})
    with pytest.raises(InvalidAction):
        await submitter.submit({"type": "add", "a": "x", "b": 1})
    with pytest.raises(InvalidAction):
        await submitter.submit({"no": "type"})
    with pytest.raises(InvalidAction):
        await submitter.submit(["not", "a", "mapping"])
    with pytest.raises(InvalidAction):
        await submitter.submit({"type": "echo", "value": object()})
    with pytest.raises(JobFailed) as failed:
        await submitter.submit({"type": "fail", "message": "nope"})
    assert (failed.value.remote_type, failed.value.remote_message) == ("ValueError", "nope")
    with pytest.raises(JobTimeout):
        await submitter.submit({"type": "wait_file", "path": str(tmp_path / "never")}, timeout=0.2)
    with pytest.raises(ChildDied) as died:
        await submitter.submit({"type": "die", "code": 9})
    assert died.value.exitcode == 9
    assert isinstance(died.value.pid, int)


async def test_cancelling_a_call_drops_its_queued_job_and_kills_on_request(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    hold = {"type": "wait_file", "path": str(release), "value": 1}
    with running(tmp_path, children=1) as d:
        async with d.client() as client, d.client() as other:
            first = asyncio.create_task(client.submit(hold))
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="running")
            queued = asyncio.create_task(other.submit(hold))
            await wait_status(client, lambda s: s["queue_length"] == 1, daemon=d, what="queued")
            queued.cancel()
            await wait_status(
                client,
                lambda s: s["queue_length"] == 0 and s["cancelled"] == 1,
                daemon=d,
                what="the queued job dropped",
            )
            release.touch()
            assert await first == 1
            # kill_on_cancel: the running job's child is killed and replaced
            release.unlink()
            pid = (await client.status())["children"][0]["pid"]
            running_job = asyncio.create_task(other.submit(hold, kill_on_cancel=True))
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="running")
            running_job.cancel()
            await wait_status(
                client,
                lambda s: settled(s, 1) and s["children"][0]["pid"] != pid,
                daemon=d,
                what="a new child in place of the killed one",
            )


async def test_status_health_and_metrics(daemon: Daemon) -> None:
    async with daemon.client() as client:
        status = await client.status()
        assert status["pid"] == daemon.pid
        assert all({"pid", "state", "generation"} <= set(c) for c in status["children"])
        await wait_status(client, lambda s: settled(s, 2), daemon=daemon, what="2 ready")
        assert (await client.health())["status"] == "ready"
        assert "qoper8_jobs_submitted_total" in await client.metrics()


async def test_unreachable_daemon_is_a_transport_error() -> None:
    async with qoper8.Client(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(TransportError, match="cannot reach"):
            await client.submit({"type": "echo"})
        with pytest.raises(TransportError):
            await client.status()
        with pytest.raises(TransportError):
            await client.metrics()


async def test_missing_socket_is_a_transport_error(tmp_path: Path) -> None:
    async with qoper8.Client(f"unix:{tmp_path / 'nothing.sock'}") as client:
        with pytest.raises(TransportError):
            await client.submit({"type": "echo"})


async def test_a_server_that_is_not_qoper8_is_a_transport_error() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with qoper8.Client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(TransportError, match="not JSON"):
                await client.submit({"type": "echo"})
    finally:
        server.close()
        await server.wait_closed()


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="url must start"):
        qoper8.Client("ftp://example")


async def test_wrong_token_is_a_transport_error(tmp_path: Path) -> None:
    with running(tmp_path, children=1, token="right") as d:
        async with qoper8.Client(d.url, token="wrong") as client:
            with pytest.raises(TransportError, match="401"):
                await client.submit({"type": "echo"})
        async with qoper8.Client(d.url, token="right") as client:
            assert await client.submit({"type": "echo", "value": 5}) == 5


async def test_queue_full_and_waiting_for_room(tmp_path: Path) -> None:
    release = tmp_path / "release"
    hold = {"type": "wait_file", "path": str(release), "value": "held"}
    with running(tmp_path, "--max-queue", "1", children=1) as d:
        async with d.client() as client:
            first = asyncio.create_task(client.submit(hold))
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="running")
            second = asyncio.create_task(client.submit(hold))
            await wait_status(client, lambda s: s["queue_length"] == 1, daemon=d, what="queued")
            with pytest.raises(QueueFull):
                await client.submit({"type": "echo"}, wait_for_room=False)
            # waiting for room: retried until the queue drains, within the deadline
            waiting = asyncio.create_task(client.submit({"type": "echo", "value": 3}, timeout=20))
            await wait_status(client, lambda s: s["rejected"] >= 2, daemon=d, what="a retry")
            release.touch()
            assert list(await asyncio.gather(first, second, waiting)) == ["held", "held", 3]
            # a deadline that passes while the queue stays full is a JobTimeout, as in the pool
            os.unlink(release)
            first = asyncio.create_task(client.submit(hold))
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="running")
            second = asyncio.create_task(client.submit(hold))
            await wait_status(client, lambda s: s["queue_length"] == 1, daemon=d, what="queued")
            with pytest.raises(JobTimeout):
                await client.submit({"type": "echo"}, timeout=0.3)
            release.touch()
            await asyncio.gather(first, second)


async def test_a_draining_daemon_answers_pool_closed(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with running(tmp_path, children=1) as d:
        async with d.client() as client:
            job = asyncio.create_task(
                client.submit({"type": "wait_file", "path": str(release), "value": 1})
            )
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="running")
            d.signal(signal.SIGTERM)
            await wait_status(client, lambda s: s["draining"], daemon=d, what="draining")
            with pytest.raises(PoolClosed):
                await client.submit({"type": "echo"})
            release.touch()
            assert await job == 1


async def test_resize_and_reload(tmp_path: Path) -> None:
    with running(tmp_path, children=1) as d:
        async with d.client() as client:
            assert await client.resize(2) == 2
            assert await client.resize(delta=-1) == 1
            assert await client.reload() == 2
            status = await client.status()
            assert status["generation"] == 2


async def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "q.sock"
    d = Daemon(tmp_path, "--unix", str(sock), children=1, tcp=False).start()
    try:
        async with qoper8.Client(f"unix:{sock}") as client:

            async def ready() -> bool:
                try:
                    return bool((await client.health())["status"] == "ready")
                except TransportError:
                    return False

            await wait_until(ready, daemon=d, what="ready on the socket")
            assert await client.submit({"type": "add", "a": 1, "b": 1}) == 2
            assert (await client.status())["urls"] == [f"unix:{sock}"]
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
        assert not sock.exists()
    finally:
        d.stop()
