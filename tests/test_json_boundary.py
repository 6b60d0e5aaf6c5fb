"""JSON means JSON: what each Python value becomes on every face (the README's table, row
by row), and NaN/Infinity refused instead of silently arriving as null."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

import qoper8
import qoper8.sync
from qoper8._engine import protocol as proto

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

HANDLERS = "tests.json_handlers:worker"
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=1) as p:
        yield p


@pytest.fixture(scope="module")
def sync_pool() -> Iterator[qoper8.sync.Pool]:
    with qoper8.sync.Pool(HANDLERS, children=1) as p:
        yield p


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Spot:
    x: int
    tags: tuple[str, ...]


class Stamp(BaseModel):
    at: datetime.datetime
    id: uuid.UUID


class Name(str):
    pass


class Count(int):
    pass


class Row(dict[str, int]):
    pass


class Items(list[int]):
    pass


UTC = datetime.UTC
# (value, what the handler receives), one per row of the README's table.
COERCED: list[tuple[Any, Any]] = [
    (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05+00:00"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=UTC), "2024-01-02T03:04:05.000600+00:00"),
    (datetime.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
    (datetime.date(2024, 1, 2), "2024-01-02"),
    (datetime.time(3, 4, 5), "03:04:05"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ((1, (2, 3)), [1, [2, 3]]),
    (Colour.RED, "red"),
    (Level.HIGH, 3),
    (Spot(1, ("a", "b")), {"x": 1, "tags": ["a", "b"]}),
    (
        Stamp(at=datetime.datetime(2024, 1, 2, tzinfo=UTC), id=uuid.UUID(int=2)),
        {"at": "2024-01-02T00:00:00Z", "id": "00000000-0000-0000-0000-000000000002"},
    ),
    (Name("ada"), "ada"),
    (Count(3), 3),
    (Row(a=1), {"a": 1}),
    (Items([1, 2]), [1, 2]),
    (None, None),
    ("null", "null"),
    (2**64 - 1, 2**64 - 1),
    (-(2**63), -(2**63)),
]
COERCED_IDS = [
    "datetime",
    "datetime-micro",
    "naive-datetime",
    "date",
    "time",
    "uuid",
    "tuple",
    "enum",
    "int-enum",
    "dataclass",
    "pydantic",
    "str-subclass",
    "int-subclass",
    "dict-subclass",
    "list-subclass",
    "none",
    "null-string",
    "u64",
    "i64",
]


@pytest.mark.parametrize(("value", "received"), COERCED, ids=COERCED_IDS)
async def test_each_coercion_is_what_the_readme_table_says_on_every_face(
    pool: qoper8.Pool, sync_pool: qoper8.sync.Pool, value: Any, received: Any
) -> None:
    action = {"type": "echo", "value": value}
    # The encoding helper Client.submit and RedisPool.submit send through
    assert proto.loads(proto.encode_action(action)[1])["value"] == received
    assert await pool.submit(action) == received
    assert sync_pool.submit(action) == received
    # Typed results undo the coercion where the caller asks for the type
    if isinstance(value, Spot | Stamp | uuid.UUID | datetime.datetime | Colour):
        assert await pool.submit(action, result_type=type(value)) == value


REFUSED: list[Any] = [
    float("nan"),
    math.inf,
    -math.inf,
    2**64,
    -(2**63) - 1,
    b"bytes",
    {1, 2},
    decimal.Decimal("1.5"),
    1j,
    {1: "int key"},
    object(),
]


@pytest.mark.parametrize(
    "value",
    REFUSED,
    ids=[
        "nan",
        "inf",
        "-inf",
        "u64+1",
        "i64-1",
        "bytes",
        "set",
        "decimal",
        "complex",
        "key",
        "obj",
    ],
)
async def test_what_json_cannot_say_is_refused_on_every_face(
    pool: qoper8.Pool, sync_pool: qoper8.sync.Pool, value: Any
) -> None:
    action = {"type": "echo", "value": value}
    with pytest.raises(qoper8.InvalidAction):
        proto.encode_action(action)
    submitted = pool.statistics().submitted
    with pytest.raises(qoper8.InvalidAction):
        await pool.submit(action)
    with pytest.raises(qoper8.InvalidAction):
        sync_pool.submit(action)
    assert pool.statistics().submitted == submitted, "refused before any child saw it"


NESTED_NAN: list[tuple[Any, list[str | int], str]] = [
    ({"type": "echo", "value": math.nan}, ["value"], "NaN"),
    ({"type": "echo", "value": {"scores": [1.0, -math.inf]}}, ["value", "scores", 1], "-Infinity"),
    ({"type": "echo", "value": [(0, math.inf)]}, ["value", 0, 1], "Infinity"),
    ({"type": "echo", "value": Spot(1, ("a",)), "w": [math.nan]}, ["w", 0], "NaN"),
    (
        {"type": "echo", "value": {"spot": dataclasses.replace(Spot(1, ()), x=math.nan)}},  # type: ignore[arg-type]
        ["value", "spot", "x"],
        "NaN",
    ),
]


class Scored(BaseModel):
    type: str = "echo"
    value: float


@pytest.mark.parametrize(
    ("action", "loc", "name"), NESTED_NAN, ids=["top", "list", "tuple", "sibling", "dataclass"]
)
async def test_nan_is_refused_naming_its_field_on_every_face(
    pool: qoper8.Pool,
    sync_pool: qoper8.sync.Pool,
    action: dict[str, Any],
    loc: list[str | int],
    name: str,
) -> None:
    async with (
        qoper8.Client("http://127.0.0.1:9") as client,
        qoper8.RedisPool("redis://127.0.0.1:9/0") as redis_pool,
    ):

        async def helper() -> Any:
            return proto.encode_action(action)

        async def blocking() -> Any:
            return sync_pool.submit(action)

        faces: list[Callable[[], Awaitable[Any]]] = [
            helper,
            lambda: pool.submit(action),
            blocking,
            lambda: client.submit(action),  # refused before any connection is tried
            lambda: redis_pool.submit(action),  # likewise
        ]
        for face in faces:
            with pytest.raises(qoper8.InvalidAction) as info:
                await face()
            assert info.value.errors == [
                {"loc": loc, "msg": proto.NON_FINITE_MSG, "type": "finite_number"}
            ]
            assert f"field {proto.format_path(loc)} is {name}" in str(info.value)


async def test_nan_inside_a_pydantic_action_is_refused(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.InvalidAction) as info:
        await pool.submit(Scored(value=math.nan))
    assert info.value.errors[0]["loc"] == ["value"]


async def test_none_and_the_word_null_still_pass(pool: qoper8.Pool) -> None:
    value = {"a": None, "b": "null", "c": [None, 1.5], "d": {"null": None}}
    assert await pool.submit({"type": "echo", "value": value}) == value


@pytest.mark.parametrize(("which", "where"), [("nan", "scores[1] is NaN"), ("-inf", "-Infinity")])
async def test_a_nan_result_is_job_failed_with_the_reason(
    pool: qoper8.Pool, which: str, where: str
) -> None:
    pid = await pool.submit({"type": "pid"})
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.submit({"type": "non_finite", "which": which})
    assert info.value.remote_type == "ValueError"
    assert "the result of handler 'non_finite' is not JSON" in str(info.value)
    assert where in str(info.value)
    with pytest.raises(qoper8.JobFailed, match="it is NaN"):
        await pool.submit({"type": "nan_itself"})
    assert await pool.submit({"type": "pid"}) == pid, "the child lives on"


async def test_results_are_coerced_as_the_table_says(pool: qoper8.Pool) -> None:
    assert await pool.submit({"type": "coercions"}) == {
        "datetime": "2024-01-02T03:04:05+00:00",
        "naive": "2024-01-02T03:04:05",
        "date": "2024-01-02",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "tuple": [1, 2],
        "enum": "red",
        "dataclass": {"x": 1, "tags": ["a"]},
        "model": {"x": 1, "at": "2024-01-02T00:00:00Z"},
    }


async def test_the_inline_pool_refuses_and_reports_alike() -> None:
    import qoper8.testing

    async with qoper8.testing.InlinePool(HANDLERS) as inline:
        with pytest.raises(qoper8.JobFailed, match=r"scores\[1\] is NaN"):
            await inline.submit({"type": "non_finite"})
        with pytest.raises(qoper8.InvalidAction) as info:
            await inline.submit({"type": "echo", "value": math.inf})
        assert info.value.errors[0]["loc"] == ["value"]
        with pytest.raises(qoper8.InvalidAction) as info:
            await inline.submit({"type": "add", "a": 1})
        assert info.value.errors == [{"loc": ["b"], "msg": "Field required", "type": "missing"}]
