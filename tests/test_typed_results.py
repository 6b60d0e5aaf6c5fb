"""submit(action, result_type=T) returns a validated T on every face, and type checkers
infer T (checked by mypy over this file: assert_type fails type-checking, not at run time)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING, assert_type

import pytest
import pytest_asyncio
from pydantic import BaseModel

import qoper8
import qoper8.sync
from qoper8._engine import results as _results
from qoper8._types import JSONValue
from tests.http_support import Api, serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

HANDLERS = "tests.json_handlers:worker"
# The async tests share one pool and its HTTP API; the blocking one runs on its own.
module_loop = pytest.mark.asyncio(loop_scope="module")


class User(BaseModel):
    id: int
    name: str
    joined: datetime.datetime


@dataclasses.dataclass
class UserRow:
    id: int
    name: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api() -> AsyncIterator[Api]:
    async with serving(HANDLERS) as served:
        yield served


@module_loop
async def test_the_pool_returns_the_result_type(api: Api) -> None:
    pool = api.pool
    user = await pool.submit({"type": "user", "id": 1}, result_type=User)
    assert_type(user, User)
    assert user == User(
        id=1, name="ada", joined=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    )
    row = await pool.submit({"type": "user", "id": 2, "name": "bob"}, result_type=UserRow)
    assert_type(row, UserRow)
    assert row == UserRow(2, "bob")
    total = await pool.submit({"type": "add", "a": 1, "b": 2}, result_type=int)
    assert_type(total, int)
    assert total == 3
    users = await pool.submit(
        {"type": "echo", "value": [{"id": 1, "name": "a"}]}, result_type=list[UserRow]
    )
    assert users == [UserRow(1, "a")]
    plain = await pool.submit({"type": "user", "id": 1})
    assert_type(plain, JSONValue)
    assert isinstance(plain, dict)


@module_loop
async def test_a_result_that_does_not_fit_is_invalid_result(api: Api) -> None:
    with pytest.raises(qoper8.InvalidResult) as info:
        await api.pool.submit({"type": "echo", "value": {"id": "x"}}, result_type=UserRow)
    err = info.value
    assert isinstance(err, qoper8.JobError)
    assert not isinstance(err, qoper8.JobFailed)
    assert err.result == {"id": "x"}
    assert err.errors == [
        {
            "loc": ["id"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
        {"loc": ["name"], "msg": "Field required", "type": "missing"},
    ]
    assert "does not fit UserRow" in str(err)
    assert isinstance(err.job_id, int)


@module_loop
async def test_the_client_returns_the_result_type(api: Api) -> None:
    async with qoper8.Client(api.url) as client:
        user = await client.submit({"type": "user", "id": 3}, result_type=User)
        assert_type(user, User)
        assert (user.id, user.joined.year) == (3, 2024)
        with pytest.raises(qoper8.InvalidResult):
            await client.submit({"type": "add", "a": 1, "b": 1}, result_type=User)


def test_the_blocking_pool_returns_the_result_type() -> None:
    with qoper8.sync.Pool(HANDLERS, children=1) as pool:
        user = pool.submit({"type": "user", "id": 4}, result_type=User)
        assert_type(user, User)
        assert user.id == 4
        with pytest.raises(qoper8.InvalidResult):
            pool.submit({"type": "user", "id": 4}, result_type=int)


@module_loop
async def test_adapters_are_built_once_per_type(api: Api) -> None:

    _results._cached_adapter.cache_clear()
    for _ in range(3):
        await api.pool.submit({"type": "user", "id": 1}, result_type=User)
    info = _results._cached_adapter.cache_info()
    assert (info.misses, info.hits) == (1, 2)
