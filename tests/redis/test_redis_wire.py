"""The ``Wire`` (one pipelined Redis connection) and RESP: packing, both reply readers, order,
errors, lost scripts, deadlines, lost connections. The rest of tests/redis runs every Redis
command of qoper8 through it."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from qoper8._redis import resp, wire
from qoper8._redis.wire import Script, Wire

from .conftest import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import redis


# ---------------------------------------------------------------- RESP, no server
def test_pack_sends_text_bytes_and_numbers_as_bulk_strings() -> None:
    assert resp.pack(("SET", b"k\r\n", 7, 0.5, "é")) == (
        b"*5\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n7\r\n$3\r\n0.5\r\n$2\r\n\xc3\xa9\r\n"
    )
    for bad in (None, True, [1]):
        with pytest.raises(DataError):
            resp.pack(("SET", "k", bad))


STREAM = (
    b"+OK\r\n"
    b"-NOSCRIPT No matching script\r\n"
    b":-42\r\n"
    b"$5\r\na\r\nbc\r\n"
    b"$0\r\n\r\n"
    b"$-1\r\n"
    b"*-1\r\n"
    b"*0\r\n"
    b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n-ERR inner\r\n"
)


def _replies(reader: resp.Reader, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.gets()) is not False:
            out.append(reply)
    return out


def _plain(reply: Any) -> Any:
    """Error replies as ("error", text), whichever reader made them."""
    if isinstance(reply, resp.REPLY_ERRORS):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [_plain(r) for r in reply]
    return reply


@pytest.mark.parametrize("chunk", [1, 3, 7, len(STREAM)])
def test_the_python_reader_reads_every_reply_in_any_chunking(chunk: int) -> None:
    chunks = [STREAM[i : i + chunk] for i in range(0, len(STREAM), chunk)]
    replies = [_plain(r) for r in _replies(resp.PyReader(), chunks)]
    assert replies == [
        b"OK",
        ("error", "NOSCRIPT No matching script"),
        -42,
        b"a\r\nbc",
        b"",
        None,
        None,
        [],
        [1, [b"x", None], ("error", "ERR inner")],
    ]
    # and exactly as hiredis (the reader the redis extra installs) reads them
    assert replies == [_plain(r) for r in _replies(resp.new_reader(), [STREAM])]


def test_error_replies_become_redis_pys_exceptions() -> None:
    assert isinstance(resp.reply_error("NOSCRIPT No matching script"), NoScriptError)
    assert isinstance(resp.reply_error("ERR unknown command 'X'"), ResponseError)


# ---------------------------------------------------------------- a real Redis
@pytest.fixture
async def wire_(redis_url: str) -> AsyncIterator[Wire]:
    w = Wire(redis_url)
    yield w
    await w.aclose()


@pytest.mark.redis
async def test_replies_settle_their_commands_in_order(wire_: Wire) -> None:
    key = f"t{uuid.uuid4().hex}"
    try:
        counts = await asyncio.gather(*(wire_.command("INCR", key) for _ in range(500)))
        assert counts == list(range(1, 501))
    finally:
        await wire_.command("DEL", key)


@pytest.mark.redis
async def test_a_lone_command_goes_out_at_once_and_a_burst_in_one_write(
    wire_: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    await wire_.command("PING")  # connected
    transport: Any = wire_._transport
    writes: list[bytes] = []
    real_write = transport.write

    def write(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    monkeypatch.setattr(transport, "write", write)
    first = wire_.command("PING")  # nothing in flight: written now
    assert len(writes) == 1
    burst = [wire_.command("ECHO", str(i)) for i in range(10)]  # behind it: this loop turn's
    assert len(writes) == 1
    assert await asyncio.gather(first, *burst) == [b"PONG", *(str(i).encode() for i in range(10))]
    assert len(writes) == 2


@pytest.mark.redis
async def test_an_error_reply_fails_its_command_only(wire_: Wire) -> None:
    results = await asyncio.gather(
        wire_.command("PING"),
        wire_.command("NO-SUCH-COMMAND"),
        wire_.command("ECHO", "after"),
        return_exceptions=True,
    )
    assert results[0] == b"PONG"
    assert isinstance(results[1], ResponseError)
    assert results[2] == b"after"


@pytest.mark.redis
async def test_a_script_runs_again_after_redis_lost_its_script_cache(wire_: Wire) -> None:
    script = Script(f"return {{ARGV[1], '{uuid.uuid4().hex}'}}")  # a script Redis never saw
    assert (await wire_.script(script, [], ["first"]))[0] == b"first"
    await wire_.command("SCRIPT", "FLUSH")  # as after a restart
    answers = await asyncio.gather(*(wire_.script(script, [], [str(i)]) for i in range(3)))
    assert [a[0] for a in answers] == [b"0", b"1", b"2"]


@pytest.mark.redis
async def test_a_command_unanswered_past_its_deadline_fails_and_the_wire_reconnects(
    wire_: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "SOCKET_TIMEOUT", 0.2)
    key = f"t{uuid.uuid4().hex}"
    # BLPOP blocks 5 s in Redis, but is sent as if it were not blocking: overdue at 0.2 s
    blocked = wire_.command("BLPOP", key, 5)
    behind = wire_.command("PING")  # pipelined behind it: its reply cannot come first
    async with asyncio.timeout(3):
        with pytest.raises(RedisTimeoutError):
            await blocked
        with pytest.raises(RedisTimeoutError):
            await behind
        assert await wire_.command("PING") == b"PONG"  # a new connection


@pytest.mark.redis
async def test_a_blocking_command_gets_its_block_on_top_of_the_deadline(
    wire_: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "SOCKET_TIMEOUT", 0.2)
    key = f"t{uuid.uuid4().hex}"
    async with asyncio.timeout(5):
        assert await wire_.command("BLPOP", key, 0.5, block=0.5) is None


@pytest.mark.redis
async def test_a_lost_connection_fails_its_commands_and_the_next_one_reconnects(
    wire_: Wire, sync_redis: redis.Redis
) -> None:
    me = await wire_.command("CLIENT", "ID")
    blocked = wire_.command("BLPOP", f"t{uuid.uuid4().hex}", 5, block=5)
    async with asyncio.timeout(3):
        # the BLPOP is in Redis once the server lists this client as blocked
        while not any(  # noqa: ASYNC110 (Redis notifies nothing; each try is a round trip)
            c["id"] == str(me) and c["cmd"] == "blpop" for c in sync_redis.client_list()
        ):
            await asyncio.sleep(0.01)
        sync_redis.client_kill_filter(_id=me)
        with pytest.raises(RedisConnectionError):
            await blocked
        assert await wire_.command("CLIENT", "ID") != me


@pytest.mark.redis
async def test_a_closed_wire_refuses_commands(wire_: Wire) -> None:
    pending = wire_.command("BLPOP", f"t{uuid.uuid4().hex}", 5, block=5)
    await asyncio.sleep(0)
    await wire_.aclose()
    with pytest.raises(RedisConnectionError):
        await pending
    with pytest.raises(RedisConnectionError):
        await wire_.command("PING")


async def test_an_unreachable_redis_fails_commands_with_a_connection_error() -> None:
    w = Wire(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        async with asyncio.timeout(5):
            results = await asyncio.gather(
                w.command("PING"), w.command("PING"), return_exceptions=True
            )
    finally:
        await w.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results)
