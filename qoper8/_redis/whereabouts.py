"""Where a job stood when its ``RedisPool`` caller gave up on it: read from its job hash and
the hosts' registrations in one round trip (``locate``), and put in words (``whereabouts``,
pure) for the message of the ``JobTimeout``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from redis.exceptions import RedisError

from .jobs import TIMESTAMP_FORMAT, _text
from .scripts import CONSUMERS_PREFIX, JOB_PREFIX

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .wire import Wire

__all__ = ["FIELDS", "NOWHERE", "locate", "whereabouts"]

FIELDS: Final = ("status", "worker_name", "retries_left", "last_heartbeat")
NOWHERE: Final = "no idle child on any host, or no host serving the queue?"


async def locate(wire: Wire, job_id: str, queue: str, limit: float) -> str:
    """Where the job stood, in words; bounded by ``limit`` seconds (it only words an error)."""
    try:
        async with asyncio.timeout(limit):
            fields, consumers = await asyncio.gather(
                wire.command("HMGET", JOB_PREFIX + job_id, *FIELDS),
                wire.command("ZRANGE", CONSUMERS_PREFIX + queue, 0, -1, "WITHSCORES"),
            )
    except (TimeoutError, RedisError, OSError):
        return NOWHERE
    job = {k: _text(v) for k, v in zip(FIELDS, fields, strict=True) if v}
    hosts = {
        _text(name): float(score)
        for name, score in zip(consumers[::2], consumers[1::2], strict=True)
    }
    return whereabouts(job, hosts, time.time())


def whereabouts(job: Mapping[str, str], hosts: Mapping[str, float], now: float) -> str:
    """Words for where a job stood when its caller gave up on it.

    Args:
        job: its hash's ``status``, ``worker_name``, ``retries_left`` and ``last_heartbeat``
            (absent when empty).
        hosts: each live host's registration expiry (``qoper8:consumers:{queue}``).
        now: the current time (the hosts' clocks are assumed in sync, as for deadlines).
    """
    status, host = job.get("status"), job.get("worker_name")
    retries = job.get("retries_left", "0")
    if status == "started" and host:
        expiry = hosts.get(host)
        if expiry is not None and expiry >= now:
            return (
                f"it was still running on host {host} (the host ends it at its deadline "
                f"and records a JobTimeout)"
            )
        seen = _ago(job.get("last_heartbeat"), now)
        then = (
            f"a host serving the queue runs it again once its lease expires ({retries} "
            f"retries left), and its result will not reach this call"
            if retries not in ("", "0")
            else "no retries are left: it fails with AbandonedJobError once its lease expires"
        )
        return (
            f"it was running on host {host}, which stopped renewing its lease{seen} "
            f"(the host died, froze or lost Redis?); {then}"
        )
    if status == "queued" and host:
        return (
            f"it had been running on host {host}, which stopped renewing its lease; it was "
            f"queued again ({retries} retries left) and no idle child took it in time"
        )
    if status == "queued":
        return f"it was still queued: {NOWHERE}"
    return NOWHERE


def _ago(stamp: str | None, now: float) -> str:
    if not stamp:
        return ""
    try:
        then = datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return ""
    return f" (last heartbeat {max(0.0, now - then):.1f}s ago)"
