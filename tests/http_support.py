"""The daemon's HTTP API served in-process over a real pool, for tests that check status
codes and error bodies without starting ``qoper8 serve``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp

import qoper8
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.listeners import bind_tcp
from tests.test_http_api import FakeControl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Api:
    """A pool behind the daemon's routes on a free loopback port."""

    def __init__(self, pool: qoper8.Pool, url: str, session: aiohttp.ClientSession) -> None:
        self.pool = pool
        self.url = url
        self.session = session

    async def post(self, body: bytes | object) -> tuple[int, Any]:
        """POST /v1/submit; the status and the decoded JSON answer."""
        data = body if isinstance(body, bytes) else None
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
        async with self.session.post(self.url + "/v1/submit", **kwargs) as resp:
            return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def serving(worker: str, *, debug: bool = False, **settings: Any) -> AsyncIterator[Api]:
    async with qoper8.Pool(worker, children=1, **settings) as pool:
        api = HttpApi(pool, FakeControl(), token=None, max_body_bytes=10 << 20, debug=debug)
        await api.start(bind_tcp("127.0.0.1", 0))
        try:
            async with aiohttp.ClientSession() as session:
                yield Api(pool, api.urls[0], session)
        finally:
            await api.stop()
