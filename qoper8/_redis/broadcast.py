"""``RedisPool.broadcast``: a message to every child of every live host of a queue, and each
child's answer (the hosts' side: ``broadcast_host``).

One XADD to the queue's broadcast stream (``qoper8:bcast:{queue}``) reaches every host, each
of which reads it with a blocking XREAD; each runs its pool's ``broadcast`` and pushes its
children's answers to the request's reply list (``qoper8:breply:{id}``). The hosts expected
are the queue's registered consumers (``qoper8:consumers:{queue}``) when the request goes
out: one that does not answer in time is an entry of its own, never silently missing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._engine import protocol as proto
from .._engine.delivery import BroadcastResult, ChildReply
from ..errors import InvalidAction, JobTimeout, TransportError, error_from_dict
from .connection import describe_url, is_redis_failure
from .jobs import _text
from .scripts import CONSUMERS_PREFIX
from .stream_scripts import BCAST_MAXLEN, BCAST_PREFIX, BREPLY_PREFIX, STICKY_PREFIX
from .wire import Wire

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .client import RedisClient

__all__ = ["REDIS_BROADCAST_TIMEOUT", "broadcast"]

# A broadcast with timeout=None waits this long: a host that died without unregistering
# stays registered for a while, and must not hold the caller forever.
REDIS_BROADCAST_TIMEOUT: Final = 30.0
# A broadcast's payload, at most (as a job's action, in Redis and in every host's memory).
MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024


async def broadcast(
    client: RedisClient,
    topic: str,
    payload: Mapping[str, Any] | None,
    *,
    timeout: float | None,
    sticky: bool,
) -> BroadcastResult:
    proto.check_topic(topic)
    try:
        body = proto.encode_value(payload, f"the message on {topic!r}", MAX_PAYLOAD_BYTES)
    except (TypeError, ValueError) as exc:
        raise InvalidAction(str(exc)) from None
    wait = REDIS_BROADCAST_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + wait
    request = secrets.token_hex(16)
    reply_key = BREPLY_PREFIX + request
    # A connection of the call's own: it ends blocked in BLPOP for the answers (the client's
    # pipelined one must not block), and a broadcast is rare enough to pay for connecting.
    wire = Wire(client.url)
    try:
        return await _broadcast(wire, client, topic, body, wait, deadline, sticky, reply_key)
    finally:
        await wire.aclose()


async def _broadcast(
    wire: Wire,
    client: RedisClient,
    topic: str,
    body: bytes,
    wait: float,
    deadline: float,
    sticky: bool,
    reply_key: str,
) -> BroadcastResult:
    queue = client.queue
    sent = [wire.command("ZRANGEBYSCORE", CONSUMERS_PREFIX + queue, time.time(), "+inf")]
    if sticky:
        sent.append(wire.command("HSET", STICKY_PREFIX + queue, topic, body))
    sent.append(
        wire.command(
            "XADD",
            BCAST_PREFIX + queue,
            "MAXLEN",
            "~",
            BCAST_MAXLEN,
            "*",
            "topic",
            topic,
            "payload",
            body,
            "timeout",
            repr(wait),
            "sticky",
            "1" if sticky else "0",
            "reply",
            reply_key,
        )
    )
    try:
        async with asyncio.timeout(wait):
            hosts, *_ = await asyncio.gather(*sent)
    except Exception as exc:
        if not (isinstance(exc, TimeoutError) or is_redis_failure(exc)):
            raise
        raise TransportError(
            f"broadcast on {topic!r}: Redis at {describe_url(client.url)} could not be "
            f"reached ({exc!r})"
        ) from None
    expected = {_text(h) for h in hosts}
    answers = await _collect(wire, reply_key, expected, deadline)
    replies: list[ChildReply] = []
    for host, answer in answers.items():
        replies += _replies(host, answer, topic)
    for host in sorted(expected - answers.keys()):
        error = JobTimeout(
            f"host {host} did not answer the message on {topic!r} within {wait:g}s "
            f"(dead, frozen, or cut off from Redis?)"
        )
        replies.append(ChildReply(0, None, error=error, host=host))
    replies.sort(key=lambda r: (r.host or "", r.child))
    return BroadcastResult(topic, tuple(replies))


async def _collect(
    wire: Wire, reply_key: str, expected: set[str], deadline: float
) -> dict[str, dict[str, Any]]:
    """The hosts' answers, until every expected host answered or the deadline."""
    answers: dict[str, dict[str, Any]] = {}
    while expected and not expected <= answers.keys():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            popped = await wire.command("BLPOP", reply_key, f"{left:.3f}", block=left)
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            break  # the hosts not heard from are reported as not answering
        if popped is None:
            break
        try:
            answer = orjson.loads(popped[1])
            answers[str(answer["host"])] = answer
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return answers


def _replies(host: str, answer: dict[str, Any], topic: str) -> list[ChildReply]:
    if isinstance(answer.get("error"), dict):  # the host could not broadcast at all
        return [ChildReply(0, None, error=error_from_dict(answer["error"]), host=host)]
    out = []
    for entry in answer.get("replies") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("child"), int):
            error = TransportError(f"host {host} answered {topic!r} with {entry!r:.200}")
            out.append(ChildReply(0, None, error=error, host=host))
            continue
        info = entry.get("error")
        out.append(
            ChildReply(
                entry["child"],
                entry.get("pid"),
                entry.get("value"),
                error_from_dict(info) if isinstance(info, dict) else None,
                host,
            )
        )
    return out
