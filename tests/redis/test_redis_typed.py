"""Through Redis: typed results, HandlerError's fields, remote_is and structured validation
errors arrive as on the local pool (they travel by error_to_dict / error_from_dict)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, assert_type

import pytest
from pydantic import BaseModel

import qoper8
from qoper8._redis import RedisConsumer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.redis


class User(BaseModel):
    id: int
    name: str


@contextlib.asynccontextmanager
async def _serving(url: str, queue: str) -> AsyncIterator[None]:
    async with qoper8.Pool("tests.json_handlers:worker", children=1) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue, lease=30.0)
        task = asyncio.create_task(consumer.run())
        try:
            yield
        finally:
            await consumer.stop()
            await task


async def test_redis_pool_carries_typed_results_and_mappable_errors(
    redis_url: str, queue_name: str
) -> None:
    async with (
        asyncio.timeout(30),
        _serving(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name, timeout=10) as rp,
    ):
        user = await rp.submit({"type": "user", "id": 1}, result_type=User)
        assert_type(user, User)
        assert user == User(id=1, name="ada")
        with pytest.raises(qoper8.InvalidResult):
            await rp.submit({"type": "add", "a": 1, "b": 1}, result_type=User)
        with pytest.raises(qoper8.JobFailed) as failed:
            await rp.submit({"type": "not_found", "id": 8})
        err = failed.value
        assert (err.status, err.code, err.details) == (404, "not_found", {"id": 8})
        assert err.remote_is(qoper8.HandlerError)
        with pytest.raises(qoper8.JobFailed) as failed:
            await rp.submit({"type": "key_error"})
        assert failed.value.remote_is(LookupError)
        with pytest.raises(qoper8.InvalidAction) as invalid:
            await rp.submit({"type": "add", "a": 1, "b": 2, "c": 3})
        assert invalid.value.errors == [
            {"loc": ["c"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        ]
