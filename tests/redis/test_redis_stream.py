"""Messages in Redis mode (issue 11 item 5): a job's messages and progress travel on a Redis
stream of its own that ``RedisPool.stream`` reads; its newest progress is in the rq job's
``meta["progress"]`` too, read back here through rq itself."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

import qoper8
from qoper8.errors import JobFailed

from .conftest import serving

if TYPE_CHECKING:
    import redis

pytestmark = pytest.mark.redis


async def test_stream_delivers_every_message_in_order_then_the_result(
    redis_url: str, queue_name: str, sync_redis: redis.Redis
) -> None:
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            got: list[Any] = []
            async with rp.stream({"type": "count", "n": 3000}, timeout=15) as stream:
                async for message in stream:
                    got.append(message)
                assert stream.result == {"sent": 3000}
            assert got == [{"i": i} for i in range(3000)]
            async with rp.stream({"type": "tokens", "words": ["a", "b"]}) as stream:
                assert [m async for m in stream] == ["a", "b"]
                assert stream.result is None


async def test_a_failure_mid_stream_raises_after_the_messages_sent_before_it(
    redis_url: str, queue_name: str
) -> None:
    async with asyncio.timeout(20):
        async with (
            serving(redis_url, queue_name, children=1),
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
        ):
            got: list[Any] = []
            with pytest.raises(JobFailed) as info:
                async with rp.stream({"type": "fail_after", "n": 5}, timeout=15) as stream:
                    async for message in stream:
                        got.append(message)
            assert got == [0, 1, 2, 3, 4]
            assert info.value.remote_type == "LookupError"
