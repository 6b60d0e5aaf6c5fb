"""A real pool behind the daemon's HTTP API, served in the test's own loop, and a
``qoper8.Client`` on it: for the messages and actors tests over HTTP."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import qoper8
from qoper8._daemon.http_api import HttpApi
from tests.daemon_support import HANDLERS, serve_like_the_daemon
from tests.test_openapi import TOKEN, FakeControl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiohttp.test_utils import TestServer


class Served:
    """The pool, the API over it, its server and a client of it."""

    def __init__(
        self, pool: qoper8.Pool, api: HttpApi, server: TestServer, client: qoper8.Client
    ) -> None:
        self.pool = pool
        self.api = api
        self.server = server
        self.client = client
        self.url = str(server.make_url("")).rstrip("/")
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def new_client(self, **kwargs: Any) -> qoper8.Client:
        return qoper8.Client(self.url, token=TOKEN, **kwargs)


@contextlib.asynccontextmanager
async def served(children: int = 2, **settings: Any) -> AsyncIterator[Served]:
    async with qoper8.Pool(HANDLERS, children=children, **settings) as pool:
        api = HttpApi(pool, FakeControl(), token=TOKEN, max_body_bytes=1 << 20)
        server = serve_like_the_daemon(api)
        await server.start_server()
        try:
            async with qoper8.Client(str(server.make_url("")).rstrip("/"), token=TOKEN) as client:
                yield Served(pool, api, server, client)
        finally:
            await server.close()
