"""``RedisConsumer.connected`` (issue 9): a daemon given a Redis nothing answers at must not
look healthy; the consumer says whether Redis answers, through an outage and back."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from qoper8._redis import RedisConsumer
from tests.conftest import wait_until

from .conftest import HANDLERS, serving

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import RedisServer

pytestmark = pytest.mark.redis


async def test_connected_follows_redis_through_an_outage(
    redis_server: Callable[..., RedisServer], queue_name: str
) -> None:
    server = redis_server()
    async with (
        asyncio.timeout(30),
        serving(server.url, queue_name, children=1, lease=3.0) as (_, consumer),
    ):
        await wait_until(lambda: consumer.connected, what="the first answer")
        assert consumer.last_error is None
        server.kill()
        await wait_until(lambda: not consumer.connected, what="the outage to be seen")
        assert "Error" in str(consumer.last_error)  # e.g. ConnectionError: ...
        server.start()  # same port, empty
        await wait_until(lambda: consumer.connected, what="Redis to answer again")
        assert consumer.last_error is None


async def test_a_consumer_of_an_unreachable_redis_is_not_connected(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    url = server.url
    server.kill()  # a port nothing answers at
    async with asyncio.timeout(20), qoper8.Pool(HANDLERS, children=1) as pool:
        # grace: how long stop() keeps trying to hand claims back to a Redis that is away
        consumer = RedisConsumer(pool, url=url, queue="nowhere", lease=3.0, grace=0.2)
        assert not consumer.connected  # before it even tried
        task = asyncio.create_task(consumer.run())
        await wait_until(lambda: consumer.last_error is not None, what="a failed attempt")
        assert not consumer.connected
        assert "Connect" in (consumer.last_error or "")
        await consumer.stop()
        await task
