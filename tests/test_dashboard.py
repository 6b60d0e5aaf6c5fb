"""The dashboard's server side: its static page (public, self-contained), ``/v1/events``
(token, snapshot then updates, bounded, closed on TERM) and what feeds it (the history of
points and the errors callers got). The page in a real browser: ``test_dashboard_browser``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.dashboard import ASSETS
from qoper8._daemon.events import MAX_STREAMS
from qoper8._daemon.http_api import HttpApi
from tests import conftest
from tests.daemon_support import HANDLERS, running, serve_like_the_daemon, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from aiohttp import ClientResponse

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio(loop_scope="module")]

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Control:
    """The daemon's side, as little as the API needs."""

    draining = False
    default_timeout: float | None = None

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "worker": HANDLERS, "version": qoper8.__version__}

    def redis_state(self) -> dict[str, Any] | None:
        return None

    async def wait_started(self) -> None:
        return None

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        return children if isinstance(children, int) else children[0]

    async def reload(self) -> int:
        return 1


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        yield pool


async def serve(pool: qoper8.Pool, **options: Any) -> tuple[HttpApi, TestClient[Any, Any]]:
    api = HttpApi(pool, Control(), token=TOKEN, max_body_bytes=4096, **options)
    client: TestClient[Any, Any] = TestClient(serve_like_the_daemon(api))
    await client.start_server()
    return api, client


async def next_event(resp: ClientResponse) -> tuple[str, Any]:
    """The next event of an SSE stream: (name, data)."""
    name, data = "message", list[str]()
    async with asyncio.timeout(10):
        while True:
            raw = await resp.content.readline()
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    return name, orjson.loads("\n".join(data))
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


async def test_the_page_is_public_self_contained_and_its_data_needs_the_token(
    shared_pool: qoper8.Pool,
) -> None:
    _, client = await serve(shared_pool)
    try:
        for path, (_, content_type) in ASSETS.items():
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.headers["Content-Type"] == content_type
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp
            assert "connect-src 'self'" in csp
            body = await resp.text()
            # Nothing from elsewhere: no URL with a host in any file of the page.
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", body.replace(
                "http://www.w3.org/2000/svg", "")), path  # fmt: skip
        assert (await client.get("/v1/events")).status == 401
        assert (await client.get("/v1/openapi.json")).status == 401
    finally:
        await client.close()


async def test_no_dashboard_serves_no_page_but_keeps_the_events(shared_pool: qoper8.Pool) -> None:
    _, client = await serve(shared_pool, dashboard=False)
    try:
        for path in ASSETS:
            resp = await client.get(path, headers=AUTH)
            assert resp.status == 404, path
        resp = await client.get("/v1/events", headers=AUTH)
        assert resp.status == 200
        assert (await next_event(resp))[0] == "snapshot"
        resp.close()
    finally:
        await client.close()


async def test_events_are_a_snapshot_then_updates_with_new_points_and_errors(
    shared_pool: qoper8.Pool,
) -> None:
    _, client = await serve(shared_pool)
    try:
        resp = await client.get("/v1/events", headers=AUTH)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        name, snapshot = await next_event(resp)
        assert name == "snapshot"
        status = snapshot["status"]
        assert [c["pid"] for c in status["children"]] == [
            c.pid for c in shared_pool.statistics().children
        ]
        assert status["roles"][0]["name"] == "daemon_handlers"
        assert status["roles"][0]["children"] == [c["id"] for c in status["children"]]
        completed = status["completed"]

        # A job that fails over HTTP: its error reaches the stream, and so do the counts.
        bad = await client.post(
            "/v1/submit", data=orjson.dumps({"type": "fail", "message": "on purpose"}),
            headers=AUTH,
        )  # fmt: skip
        assert bad.status == 500
        assert (await client.post("/v1/submit", data=b'{"type": "echo"}', headers=AUTH)).ok

        errors: list[dict[str, Any]] = []
        points: list[dict[str, Any]] = []
        while not (errors and points and status["completed"] > completed):
            name, update = await next_event(resp)
            assert name == "update"
            errors += update["errors"]
            points += update["points"]
            status = update["status"]
        assert errors[-1]["action_type"] == "fail"
        assert errors[-1]["error_type"] == "JobFailed"
        assert "on purpose" in errors[-1]["message"]
        # Each point and error comes once: an update carries only what is new.
        seqs = [p["seq"] for p in points]
        assert len(seqs) == len(set(seqs))
        resp.close()
    finally:
        await client.close()


async def test_event_streams_are_bounded(shared_pool: qoper8.Pool) -> None:
    api, client = await serve(shared_pool)
    try:
        streams = []
        for _ in range(MAX_STREAMS):
            resp = await client.get("/v1/events", headers=AUTH)
            assert resp.status == 200
            await next_event(resp)
            streams.append(resp)
        over = await client.get("/v1/events", headers=AUTH)
        assert over.status == 503
        assert (await over.json())["error"]["type"] == "TooManyStreams"
        assert "Retry-After" in over.headers
        streams.pop().close()  # one leaves: the next one gets in
        await conftest.wait_until(lambda: api.events.open < MAX_STREAMS, what="a free stream")
        again = await client.get("/v1/events", headers=AUTH)
        assert again.status == 200
        again.close()
        for resp in streams:
            resp.close()
    finally:
        await client.close()


async def test_term_ends_the_streams_at_once_while_jobs_still_drain(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running(tmp_path, "--grace", "30", token=TOKEN) as d:
        async with d.client() as client, ClientSession(headers=AUTH) as http:
            job = asyncio.create_task(
                client.submit({"type": "wait_file", "path": str(gate)}, timeout=60)
            )

            async def busy() -> bool:
                return bool((await client.status())["running"] == 1)

            await wait_until(busy, daemon=d, what="a running job")
            resp = await http.get(d.url + "/v1/events")
            assert (await next_event(resp))[0] == "snapshot"
            d.signal(signal.SIGTERM)
            name = ""
            while name != "bye":
                name, data = await next_event(resp)
            assert data == {"reason": "draining"}
            async with asyncio.timeout(10):
                assert await resp.content.read() == b""  # and the stream ends
            # ... while the daemon is still draining its job (grace 30 s).
            assert d.proc is not None
            assert d.proc.poll() is None
            gate.touch()
            await job
        assert d.wait_exit() == 0
