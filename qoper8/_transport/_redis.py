"""Redis transport: jobs are rq jobs in rq queues, run by warm qoper8 children.

``RedisConsumer`` feeds one pool from one rq queue: it takes a job only when the pool has an
idle child, leases it in rq's StartedJobRegistry, renews the lease by heartbeat, and writes
the outcome where rq's tools look (job hash, registries, results stream). ``RedisClient`` is
the submitting side behind ``qoper8.RedisPool``. This is the only module that imports redis;
it writes rq's data model itself in Lua (rq is not imported at run time; the tests read
everything back through rq), never imports the pool (it is handed one), never unpickles.

Redis keys touched (rq's data model under the prefix ``rq``, plus three of qoper8's own)::

    rq:queues                        set     queue keys; rq registers each queue here
    rq:queue:{queue}                 list    job ids waiting; producers RPUSH, takers LPOP
    rq:job:{id}                      hash    the rq job: data = zlib(JSON [func, null, args,
                                             kwargs]), status, origin, timeout, retries_left,
                                             started_at, ended_at, worker_name, exc_info, and
                                             qoper8_reply / qoper8_deadline / qoper8_error
    rq:wip:{queue}                   zset    StartedJobRegistry: "{id}:{execution}" scored by
                                             the lease's expiry (unix seconds)
    rq:execution:{id}:{execution}    hash    rq's record of one execution
    rq:executions:{id}               zset    rq's executions of one job
    rq:finished:{queue}              zset    FinishedJobRegistry, scored by result expiry
    rq:failed:{queue}                zset    FailedJobRegistry, scored by failure expiry
    rq:results:{id}                  stream  rq's results: type, return_value (base64 JSON),
                                             exc_string (base64 zlib text), execution times
    rq:workers, rq:workers:{queue}   set     rq's worker registry: each host's worker key
    rq:worker:{consumer}             hash    rq's worker record (state, heartbeat, job
                                             counts), so that `rq info` lists the hosts
    qoper8:claim:{queue}:{consumer}  list    ids an idle consumer moved off the queue with
                                             BLMOVE and has not leased yet
    qoper8:consumers:{queue}         zset    consumer names scored by heartbeat expiry; the
                                             reaper hands a dead consumer's claims back
    qoper8:reply:{client}            list    outcomes pushed to one RedisPool client (BLPOP)

Delivery is at least once: a job whose lease expires (its host died or lost Redis) is queued
again, up to ``retries_left`` times, then failed with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import socket
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)

from ..errors import (
    InvalidAction,
    JobError,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    StartFailed,
    TransportError,
    error_from_dict,
    error_to_dict,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from .._types import JSONValue
    from .._worker import HandlerInfo

__all__ = ["RedisClient", "RedisConsumer", "decode_job", "describe_url"]

logger = logging.getLogger("qoper8.redis")
T = TypeVar("T")

# ---------------------------------------------------------------- keys and rq constants
RQ: Final = "rq"
QUEUES_KEY: Final = f"{RQ}:queues"
QUEUE_PREFIX: Final = f"{RQ}:queue:"
JOB_PREFIX: Final = f"{RQ}:job:"
WIP_PREFIX: Final = f"{RQ}:wip:"
EXECUTION_PREFIX: Final = f"{RQ}:execution:"
EXECUTIONS_PREFIX: Final = f"{RQ}:executions:"
FINISHED_PREFIX: Final = f"{RQ}:finished:"
FAILED_PREFIX: Final = f"{RQ}:failed:"
RESULTS_PREFIX: Final = f"{RQ}:results:"
WORKERS_KEY: Final = f"{RQ}:workers"
WORKER_PREFIX: Final = f"{RQ}:worker:"
CLAIM_PREFIX: Final = "qoper8:claim:"
CONSUMERS_PREFIX: Final = "qoper8:consumers:"
REPLY_PREFIX: Final = "qoper8:reply:"

# rq's defaults (rq/defaults.py), used when a job does not set its own.
DEFAULT_RESULT_TTL: Final = 500
DEFAULT_FAILURE_TTL: Final = 31536000
DEFAULT_JOB_TIMEOUT: Final = 180
# rq's Result.Type values and its results-stream length (rq/results.py).
RESULT_SUCCESSFUL: Final = 1
RESULT_FAILED: Final = 2
RESULTS_MAXLEN: Final = 10
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # rq.utils._TIMESTAMP_FORMAT

# ---------------------------------------------------------------- timing
# An idle consumer blocks this long in BLMOVE per round; also how long a client's BLPOP for
# replies blocks. Longer means fewer idle round trips, shorter means a stop is seen sooner
# (stop() cancels the wait anyway, so this mostly bounds idle traffic).
BLOCK_SECONDS: Final = 1
# A command that takes longer than this counts as Redis being unreachable. Must exceed
# BLOCK_SECONDS or every idle BLMOVE would look like an outage.
SOCKET_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 2.0
# Reconnect backoff while Redis is away: doubles from BASE up to MAX, with jitter, so many
# hosts do not reconnect in lockstep.
BACKOFF_BASE: Final = 0.05
BACKOFF_MAX: Final = 2.0
# A client's reply list outlives a dead client by this long, then Redis drops it.
REPLY_TTL: Final = 300
# The largest decompressed job payload accepted: bounds memory against zlib bombs.
MAX_JOB_BYTES: Final = 16 * 1024 * 1024
# How ``lease`` (the longest a dead host's jobs wait before they are queued again) splits:
# each renewal extends the lease by WINDOW x lease, renewals come every HEARTBEAT x lease and
# every host reaps every REAP x lease (times 0.5-1 jitter). Death to requeue is at most
# (WINDOW + REAP) x lease = 5/6 of it; a host whose loop stalls for WINDOW x lease (20 s by
# default) loses its leases and its jobs may run twice.
LEASE_WINDOW_FRACTION: Final = 2 / 3
HEARTBEAT_FRACTION: Final = 1 / 6
REAP_FRACTION: Final = 1 / 6
# Errors Redis answers that pass (a replica promoted, memory freed, scripts reloaded); any
# other answered error is retried only MAX_ANSWERED_ERRORS times.
TRANSIENT_ERRORS: Final = (ReadOnlyError, OutOfMemoryError, NoScriptError)
MAX_ANSWERED_ERRORS: Final = 5
# A cancelled consumer spends at most this long handing its running jobs back.
ABANDON_TIMEOUT: Final = 2.0
# Concurrent enqueues per RedisPool; each holds one connection while in flight.
MAX_CLIENT_CONNECTIONS: Final = 32
# Expired leases handled per reaper run (the next run takes the rest).
REAP_BATCH: Final = 100


# ---------------------------------------------------------------- Lua scripts
# Take one job: first anything this consumer claimed with BLMOVE, else the queue head. Skips
# ids whose hash is gone or whose status says it is not waiting (finished, a duplicate id of
# a running job...). Leases the job in rq's StartedJobRegistry, as rq's prepare_execution does.
# Arguments (t = the 7 take arguments): now, lease expiry, worker name, execution id, max
# retries, now (rq text), execution ttl. Returns the job's fields, or false.
TAKE_FUNCTION: Final = """
local function take(queue, wip, claim, t)
  local id = redis.call('LPOP', claim)
  if not id then id = redis.call('LPOP', queue) end
  while id do
    local jk = 'rq:job:' .. id
    -- pcall: a key of the wrong type (written by anyone) is skipped like a missing one
    local f = redis.pcall('HMGET', jk, 'data', 'status', 'timeout', 'retries_left',
                          'qoper8_reply', 'qoper8_deadline', 'result_ttl', 'failure_ttl')
    if f.err then f = {} end
    local st = f[2]
    if f[1] and (not st or st == 'queued' or st == 'created' or st == '') then
      local member = id .. ':' .. t[4]
      redis.call('HSET', jk, 'status', 'started', 'started_at', t[6],
                 'last_heartbeat', t[6], 'worker_name', t[3], 'ended_at', '')
      if not f[4] then redis.call('HSET', jk, 'retries_left', t[5]) end
      redis.call('PERSIST', jk)
      redis.call('ZADD', wip, t[2], member)
      local ek = 'rq:execution:' .. member
      redis.call('HSET', ek, 'id', t[4], 'job_id', id, 'created_at', t[1],
                 'last_heartbeat', t[1], 'worker_name', t[3])
      redis.call('EXPIRE', ek, t[7])
      redis.call('ZADD', 'rq:executions:' .. id, t[2] + 60, t[4])
      redis.call('EXPIRE', 'rq:executions:' .. id, t[7])
      return {id, f[1], f[3] or false, f[5] or false, f[6] or false, f[7] or false,
              f[8] or false}
    end
    id = redis.call('LPOP', queue)
  end
  return false
end
"""

# KEYS: queue, wip, claim. ARGV: the 7 take arguments.
TAKE_LUA: Final = TAKE_FUNCTION + "return take(KEYS[1], KEYS[2], KEYS[3], ARGV)\n"

# Record an outcome, only if this execution still holds its lease (otherwise the job was
# queued again and another execution owns it; this one's outcome is dropped). If the job
# hash is gone altogether (Redis restarted empty), the waiting client still gets its reply.
# Then, if asked, take the next job for the child that just became idle: under load a job
# costs this one round trip instead of two. Arguments travel as one JSON object (packing
# thirty separate arguments cost the master more than the rest of the job).
# KEYS: wip, queue, claim. ARGV[1]: {id, m: member, x: execution id, s: status, e: ended_at,
# reg: registry key, sc: registry score, ttl (-1 persist, 0 delete), rk: reply key, rp: reply,
# jf: job field/value pairs, sf: stream field/value pairs, w: rq worker key, t: the 7 take
# arguments or absent}.
# Returns {1 if recorded else 0, the next job or false}.
FINISH_LUA: Final = (
    TAKE_FUNCTION
    + """
local a = cjson.decode(ARGV[1])
local jk = 'rq:job:' .. a.id
local function finish()
  if redis.call('ZREM', KEYS[1], a.m) == 0 then
    if a.rk ~= '' and redis.call('EXISTS', jk) == 0 then
      redis.call('RPUSH', a.rk, a.rp)
      redis.call('EXPIRE', a.rk, %(reply_ttl)d)
    end
    return 0
  end
  local fields = {'status', a.s, 'ended_at', a.e}
  for _, v in ipairs(a.jf) do fields[#fields + 1] = v end
  redis.pcall('HSET', jk, unpack(fields))
  local rk = 'rq:results:' .. a.id
  if a.ttl ~= '0' then
    redis.call('ZADD', a.reg, a.sc, a.id)
    redis.call('XADD', rk, 'MAXLEN', '~', %(maxlen)d, '*', unpack(a.sf))
  end
  if a.ttl == '0' then
    redis.call('DEL', jk)
  elseif a.ttl == '-1' then
    redis.call('PERSIST', jk)
  else
    redis.call('EXPIRE', jk, a.ttl)
    redis.call('EXPIRE', rk, a.ttl)
  end
  redis.call('DEL', 'rq:execution:' .. a.m)
  redis.call('ZREM', 'rq:executions:' .. a.id, a.x)
  if a.rk ~= '' then
    redis.call('RPUSH', a.rk, a.rp)
    redis.call('EXPIRE', a.rk, %(reply_ttl)d)
  end
  if redis.call('EXISTS', a.w) == 1 then
    local counter = 'failed_job_count'
    if a.s == 'finished' then counter = 'successful_job_count' end
    redis.call('HINCRBY', a.w, counter, 1)
  end
  return 1
end
local written = finish()
local nxt = false
if a.t then nxt = take(KEYS[2], KEYS[1], KEYS[3], a.t) end
return {written, nxt}
""".replace("%(reply_ttl)d", str(REPLY_TTL)).replace("%(maxlen)d", str(RESULTS_MAXLEN))
)

# Renew this consumer's registration (qoper8's, and rq's worker hash so that `rq info` lists
# the host) and the leases of its running jobs; return the members whose lease is already gone
# (reaped), so the consumer can log that their outcome will be dropped.
# KEYS: wip, consumers, rq:workers, rq:workers:{queue}, rq:worker:{name}. ARGV: lease expiry,
# consumer name, now (rq text), state, worker ttl, birth (rq text), hostname, pid, queue name,
# members...
HEARTBEAT_LUA: Final = """
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[5], 'name', ARGV[2], 'last_heartbeat', ARGV[3], 'state', ARGV[4],
           'birth', ARGV[6], 'hostname', ARGV[7], 'pid', ARGV[8], 'queues', ARGV[9])
redis.call('EXPIRE', KEYS[5], ARGV[5])
redis.call('SADD', KEYS[3], KEYS[5])
redis.call('SADD', KEYS[4], KEYS[5])
local lost = {}
for i = 10, #ARGV do
  local m = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], m) then
    redis.call('ZADD', KEYS[1], ARGV[1], m)
    local id = string.match(m, '^(.*):[^:]*$') or m
    redis.pcall('HSET', 'rq:job:' .. id, 'last_heartbeat', ARGV[3])
  else
    lost[#lost + 1] = m
  end
end
return lost
"""

# Any host runs this. (1) A consumer whose registration expired died: its claimed ids go back
# to the queue front. (2) A lease that expired belongs to a dead or cut-off host: the job is
# queued again while retries_left > 0 (decremented, as rq's own cleanup does), else it fails
# with the reason and its waiting client is told.
# KEYS: wip, queue, failed, consumers. ARGV: now, now (rq text), default failure ttl,
# reason text, reason (rq exc_string form), error JSON prefix, error JSON suffix, batch.
REAP_LUA: Final = (
    """
local now = tonumber(ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
local returned = 0
for _, c in ipairs(dead) do
  local ck = 'qoper8:claim:' .. string.sub(KEYS[2], 10) .. ':' .. c
  while redis.call('LMOVE', ck, KEYS[2], 'RIGHT', 'LEFT') do returned = returned + 1 end
  redis.call('ZREM', KEYS[4], c)
end
local requeued, failed = {}, {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[1], m)
  local id = string.match(m, '^(.*):[^:]*$') or m
  local ex = string.sub(m, string.len(id) + 2)
  redis.call('DEL', 'rq:execution:' .. m)
  redis.call('ZREM', 'rq:executions:' .. id, ex)
  local jk = 'rq:job:' .. id
  local f = redis.pcall('HMGET', jk, 'status', 'retries_left', 'qoper8_reply', 'failure_ttl')
  if f.err then f = {} end
  if f[1] == 'started' then
    local left = tonumber(f[2] or '0') or 0
    if left > 0 then
      redis.call('HSET', jk, 'status', 'queued', 'retries_left', left - 1, 'started_at', '')
      redis.call('RPUSH', KEYS[2], id)
      requeued[#requeued + 1] = id
    else
      local ttl = tonumber(f[4] or '') or tonumber(ARGV[3])
      local err = ARGV[6] .. id .. ARGV[7]
      redis.call('HSET', jk, 'status', 'failed', 'ended_at', ARGV[2], 'exc_info', ARGV[4],
                 'qoper8_error', err)
      if ttl >= 0 then
        redis.call('ZADD', KEYS[3], now + ttl, id)
        redis.call('EXPIRE', jk, ttl)
      else
        redis.call('ZADD', KEYS[3], '+inf', id)
      end
      redis.call('XADD', 'rq:results:' .. id, 'MAXLEN', '~', %(maxlen)d, '*', 'type', '%(failed)d',
                 'worker_name', '', 'exc_string', ARGV[5])
      if f[3] and string.sub(f[3], 1, 13) == 'qoper8:reply:' then
        redis.call('RPUSH', f[3], '{"id":"' .. id .. '","error":' .. err .. '}')
        redis.call('EXPIRE', f[3], %(reply_ttl)d)
      end
      failed[#failed + 1] = id
    end
  end
end
return {returned, requeued, failed}
""".replace("%(reply_ttl)d", str(REPLY_TTL))
    .replace("%(maxlen)d", str(RESULTS_MAXLEN))
    .replace("%(failed)d", str(RESULT_FAILED))
)

# Hand running and claimed jobs back: they go to the queue front without using up a retry,
# because nothing went wrong with them. On the final stop, also unregister the consumer.
# KEYS: wip, queue, claim, consumers, rq:workers, rq:workers:{queue}, rq:worker:{name}.
# ARGV: consumer name, final ('1' or '0'), members...
HANDBACK_LUA: Final = """
local n = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local id = string.match(m, '^(.*):[^:]*$') or m
    redis.pcall('HSET', 'rq:job:' .. id, 'status', 'queued', 'started_at', '')
    redis.call('DEL', 'rq:execution:' .. m)
    redis.call('LPUSH', KEYS[2], id)
    n = n + 1
  end
end
while redis.call('LMOVE', KEYS[3], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[7])
  redis.call('SREM', KEYS[5], KEYS[7])
  redis.call('SREM', KEYS[6], KEYS[7])
end
return n
"""

# Enqueue a job the way rq's Queue._enqueue_job does, atomically.
# KEYS: job, queue, queues. ARGV: id, field/value pairs...
ENQUEUE_LUA: Final = """
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
"""


# ---------------------------------------------------------------- helpers
def rq_now() -> str:
    """The current time as rq writes it in job hashes."""
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def describe_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in creds else '***'}@{host}"


def connect(url: str) -> aioredis.Redis:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://``, with or
    without a password). Retries are ours, not redis-py's: a take or a finish must not be
    sent twice behind our back."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )
    return client


def is_redis_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis is unreachable or misbehaving (retry later)."""
    return isinstance(exc, RedisError | OSError | EOFError)


class _Backoff:
    """Exponential backoff with jitter, and one log line per outage rather than per retry."""

    def __init__(self, what: str, url: str) -> None:
        self.what = what
        self.url = describe_url(url)
        self.delay = 0.0
        self.failing_since: float | None = None

    async def failed(self, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            logger.warning("%s: Redis at %s unreachable (%s); retrying", self.what, self.url, exc)
        self.delay = min(BACKOFF_MAX, max(BACKOFF_BASE, self.delay * 2))
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))

    def succeeded(self) -> None:
        if self.failing_since is not None:
            logger.warning(
                "%s: Redis at %s is back after %.1fs",
                self.what,
                self.url,
                time.monotonic() - self.failing_since,
            )
        self.failing_since = None
        self.delay = 0.0


def _inflate(raw: bytes) -> bytes:
    """rq's job data: zlib-compressed, or plain for old jobs (rq falls back the same way)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(raw, MAX_JOB_BYTES + 1)
    except zlib.error:
        return raw
    if len(out) > MAX_JOB_BYTES or d.unconsumed_tail:
        raise InvalidAction(f"job data inflates to more than {MAX_JOB_BYTES} bytes")
    return out


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_job(data: bytes, handlers: Mapping[str, HandlerInfo]) -> dict[str, Any]:
    """Turn rq's job data into a qoper8 action, checked against the allowlist.

    rq's JSON serializer stores ``[func_name, instance, args, kwargs]``. ``func_name`` must be
    a registered action type or a registered handler's import path; positional ``args`` bind
    in order to the handler's parameters; ``kwargs`` become the action's fields. Nothing is
    imported or run for a name that is not registered.

    Raises:
        InvalidAction: not JSON (pickle is refused, never loaded), the wrong shape, a handler
            that is not registered, or arguments that do not bind.
    """
    body = _inflate(data)
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        hint = " (it looks like pickle; qoper8 reads only JSON)" if body[:1] == b"\x80" else ""
        raise InvalidAction(
            f"job data is not JSON{hint}; enqueue with serializer=JSONSerializer"
        ) from None
    if not (isinstance(decoded, list) and len(decoded) == 4):
        raise InvalidAction(
            f"job data is {_short(decoded)}, not rq's [func_name, instance, args, kwargs]"
        )
    func_name, instance, args, kwargs = decoded
    if not isinstance(func_name, str):
        raise InvalidAction(f"job names no function: func_name is {_short(func_name)}")
    if instance is not None:
        raise InvalidAction(f"job {func_name!r} names a method on an instance; only handlers run")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidAction(f"job {func_name!r}: args must be a list and kwargs an object")
    info = handlers.get(func_name)
    if info is None:
        info = next((h for h in handlers.values() if h.import_path == func_name), None)
    if info is None:
        known = ", ".join(sorted(handlers)) or "none"
        raise InvalidAction(
            f"{func_name!r} is not a handler registered by this pool's worker module, so it "
            f"was not imported or run (registered action types: {known})"
        )
    if len(args) > len(info.params):
        raise InvalidAction(
            f"{func_name!r} takes {len(info.params)} positional arguments "
            f"{info.params}, the job gave {len(args)}"
        )
    fields: dict[str, Any] = dict(zip(info.params, args, strict=False))
    for name, value in kwargs.items():
        if name in fields:
            raise InvalidAction(f"{func_name!r}: argument {name!r} given by position and by name")
        if name == "type" and value != info.type:
            raise InvalidAction(f"{func_name!r}: a 'type' field {_short(value)} conflicts")
        fields[name] = value
    fields["type"] = info.type
    return fields


def encode_job(
    job_id: str,
    queue: str,
    action: Mapping[str, Any],
    *,
    timeout: float | None,
    reply_key: str | None,
    result_ttl: int | None = None,
) -> dict[str, bytes | str | int | float]:
    """The rq job hash for an action, as rq's Job.to_dict writes it with the JSON
    serializer: ``func_name`` is the action type, the other fields are kwargs.

    Raises:
        InvalidAction: the action is not JSON-encodable.
    """
    action_type = action["type"]
    kwargs = {k: v for k, v in action.items() if k != "type"}
    try:
        data = orjson.dumps([action_type, None, [], kwargs])
    except TypeError as exc:
        raise InvalidAction(f"action {action_type!r} is not JSON-encodable: {exc}") from None
    if len(data) > MAX_JOB_BYTES:
        raise InvalidAction(f"action {action_type!r} is {len(data)} bytes, over {MAX_JOB_BYTES}")
    now = rq_now()
    args = ", ".join(f"{k}={_short(v, 40)}" for k, v in kwargs.items())
    mapping: dict[str, bytes | str | int | float] = {
        "created_at": now,
        "enqueued_at": now,
        "data": zlib.compress(data),
        "origin": queue,
        "description": f"{action_type}({args})",
        "status": "queued",
        "timeout": max(1, int(timeout + 0.999)) if timeout is not None else DEFAULT_JOB_TIMEOUT,
        "success_callback_name": "",
        "failure_callback_name": "",
        "stopped_callback_name": "",
        "started_at": "",
        "ended_at": "",
        "last_heartbeat": "",
        "worker_name": "",
        "group_id": "",
    }
    if timeout is not None:
        mapping["qoper8_deadline"] = time.time() + timeout
    if reply_key is not None:
        mapping["qoper8_reply"] = reply_key
    if result_ttl is not None:
        mapping["result_ttl"] = result_ttl
    return mapping


async def _retrying(
    what: str, backoff: _Backoff, call: Callable[[], Awaitable[T]], give_up: Callable[[], bool]
) -> T | None:
    """Run ``call`` until it succeeds, backing off while Redis is away; ``None`` once
    ``give_up()`` says to stop trying, or after a few errors that Redis answered (a script
    error is not an outage, and repeating it forever would hold a child's slot forever)."""
    answered = 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            if isinstance(exc, ResponseError) and not isinstance(exc, TRANSIENT_ERRORS):
                answered += 1
            if give_up() or answered >= MAX_ANSWERED_ERRORS:
                logger.error("%s: gave up: %s", what, exc)
                return None
            await backoff.failed(exc)
            continue
        backoff.succeeded()
        return result


# ---------------------------------------------------------------- the consumer
class PoolLike(Protocol):
    """What the consumer needs of a pool (``qoper8.Pool`` fits); transports never import it."""

    @property
    def is_open(self) -> bool: ...

    @property
    def handlers(self) -> Mapping[str, HandlerInfo]: ...

    @property
    def size(self) -> int: ...

    def has_capacity(self) -> bool: ...

    async def wait_capacity(self) -> None: ...

    async def submit(
        self,
        action: Mapping[str, Any],
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
    ) -> JSONValue: ...


@dataclass(slots=True)
class _Running:
    """One job this consumer leased: enough to renew, finish or hand it back."""

    job_id: str
    execution_id: str
    started: float
    reply_key: str
    result_ttl: int | None
    failure_ttl: int | None
    task: asyncio.Task[None] | None = None
    finished: bool = False

    @property
    def member(self) -> str:
        return f"{self.job_id}:{self.execution_id}"


@dataclass(slots=True)
class _Outcome:
    status: str  # "finished" or "failed"
    reply: str
    job_fields: list[str] = field(default_factory=list)
    stream_fields: list[str] = field(default_factory=list)


class RedisConsumer:
    """Feeds a pool from one rq queue, taking a job only when the pool has an idle child.

    Example:
        ```python
        async with qoper8.Pool("workers.users:worker", children=8) as pool:
            consumer = RedisConsumer(pool, url="redis://redis:6379/0", queue="users")
            await consumer.run()          # until another task awaits consumer.stop()
        ```

    Args:
        pool: a started pool (``qoper8.Pool``).
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, password included if any.
        queue: the rq queue name.
        lease: at most this many seconds after a host dies, its running jobs are queued
            again (heartbeats renew leases every ``lease / 6``; any host reaps).
        max_retries: times a job whose lease expired is queued again, when the job does
            not set rq's ``retries_left`` itself; after that it fails with the reason.
        grace: how long ``stop()`` waits for running jobs before handing them back
            (default: 10 s).
        name: this consumer's rq ``worker_name`` (default: host, pid and a random suffix).
    """

    def __init__(
        self,
        pool: PoolLike,
        *,
        url: str,
        queue: str,
        lease: float = 30.0,
        max_retries: int = 3,
        grace: float = 10.0,
        name: str | None = None,
    ) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be positive, not {lease!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {max_retries!r}")
        if not queue or any(c.isspace() for c in queue):
            raise ValueError(f"{queue!r} is not a queue name")
        self.pool = pool
        self.url = url
        self.queue = queue
        self.lease = lease
        self._window = lease * LEASE_WINDOW_FRACTION
        self.max_retries = max_retries
        self.grace = grace
        self.name = name or f"qoper8.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self._queue_key = QUEUE_PREFIX + queue
        self._wip_key = WIP_PREFIX + queue
        self._failed_key = FAILED_PREFIX + queue
        self._finished_key = FINISHED_PREFIX + queue
        self._claim_key = f"{CLAIM_PREFIX}{queue}:{self.name}"
        self._consumers_key = CONSUMERS_PREFIX + queue
        self._worker_key = WORKER_PREFIX + self.name
        self._queue_workers_key = f"{WORKERS_KEY}:{queue}"
        self._birth = rq_now()
        self._running: dict[str, _Running] = {}
        self._slot_freed = asyncio.Event()
        self._queue_seen_empty = False
        self._stopping = False
        self._interruptible = False
        self._take_task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._finisher: _Batcher
        self._stop_deadline: float | None = None
        self._jobs_task: set[asyncio.Task[None]] = set()
        reason = (
            f"AbandonedJobError: the host running this job stopped renewing its {lease:g}s "
            f"lease (did it die or lose Redis?) and no retries were left"
        )
        self._reason = reason
        self._reason_b64 = base64.b64encode(zlib.compress(reason.encode())).decode()
        err = orjson.dumps({"type": "JobError", "message": reason}).decode()
        # the reaper builds {"type":..., "message":..., "job_id": "<id>"} around each id
        self._error_prefix = err[:-1] + ',"job_id":"'
        self._error_suffix = '"}'
        self.taken = 0
        self.completed = 0

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Take and run jobs until ``stop()`` (or the pool closes). Redis outages are
        logged and retried with backoff; they never end the loop."""
        if self._take_task is not None:
            raise RuntimeError("a RedisConsumer runs once")
        r = await self._start_client()
        logger.info(
            "consumer %s: taking jobs from rq queue %r at %s (lease %gs)",
            self.name,
            self.queue,
            describe_url(self.url),
            self.lease,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                beat = tg.create_task(self._heartbeat_loop())
                reap = tg.create_task(self._reap_loop())
                self._take_task = tg.create_task(self._take_loop())
                try:
                    await self._take_task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # run() itself is cancelled, not just the take loop by stop()
                self._stopping = True
                await self._finish_running()
                beat.cancel()
                reap.cancel()
        except asyncio.CancelledError:
            # Cancelled (a daemon's fast stop): still hand back what runs, briefly, so that
            # it is queued again now rather than when its lease expires.
            await self._abandon()
            raise
        finally:
            self._stopping = True
            with contextlib.suppress(Exception):
                await r.aclose()
            self._done.set()

    async def _start_client(self) -> aioredis.Redis:
        self._redis = r = connect(self.url)
        self._scripts = {
            "take": r.register_script(TAKE_LUA),
            "finish": r.register_script(FINISH_LUA),
            "heartbeat": r.register_script(HEARTBEAT_LUA),
            "reap": r.register_script(REAP_LUA),
            "handback": r.register_script(HANDBACK_LUA),
        }
        self._finisher = _Batcher(self._scripts["finish"], r)
        return r

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop taking jobs; let running ones finish for up to ``grace`` seconds (default:
        the consumer's ``grace``; 0 hands them back at once), then hand the rest back to the
        queue front (their children are killed). Returns once ``run`` has returned. No job is
        left "started"."""
        if self._take_task is None:
            self._stopping = True
            self._done.set()
            return
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + (self.grace if grace is None else grace)
            if self._interruptible and not self._take_task.done():
                self._take_task.cancel()
        await self._done.wait()

    @property
    def running_jobs(self) -> int:
        """Jobs leased by this consumer and not yet finished."""
        return len(self._running)

    def _script(self, name: str) -> Any:
        return self._scripts[name]

    def _give_up(self) -> bool:
        return self._stopping and (
            self._stop_deadline is not None and time.monotonic() > self._stop_deadline
        )

    # ------------------------------------------------------------ taking
    async def _take_loop(self) -> None:
        backoff = _Backoff(f"consumer {self.name}", self.url)
        pool = self.pool
        while not self._stopping:
            if not pool.is_open:
                logger.info("consumer %s: the pool closed; no more jobs taken", self.name)
                return
            if not pool.has_capacity():
                self._interruptible = True
                try:
                    await pool.wait_capacity()
                finally:
                    self._interruptible = False
                continue
            if len(self._running) >= pool.size:
                # An idle child whose job is being recorded: that job's finish call takes
                # the child's next job itself; wait until a job ends without a successor.
                self._slot_freed.clear()
                self._interruptible = True
                try:
                    await self._slot_freed.wait()
                finally:
                    self._interruptible = False
                continue
            try:
                raw = await self._take_one()
            except Exception as exc:
                if not is_redis_failure(exc):
                    raise
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            if raw is not None:
                self._start(raw)
                # let the job's task reach pool.submit, so has_capacity() counts it
                await asyncio.sleep(0)

    async def _take_one(self) -> list[Any] | None:
        # After the queue was seen empty, go straight to BLMOVE (it returns at once if a job
        # arrived meanwhile): one round trip fewer per job on a lightly loaded queue.
        raw = None if self._queue_seen_empty else await self._take_script()
        self._queue_seen_empty = raw is None
        if raw is None and not self._stopping:
            assert self._redis is not None
            self._interruptible = True
            try:
                moved = await self._redis.blmove(
                    self._queue_key, self._claim_key, BLOCK_SECONDS, "LEFT", "RIGHT"
                )
            finally:
                self._interruptible = False
            if moved is None or self._stopping:
                return None
            raw = await self._take_script()
        return raw

    def _take_args(self, now_text: str | None = None) -> list[Any]:
        now = time.time()
        return [
            now,
            now + self._window,
            self.name,
            uuid.uuid4().hex,  # the execution id
            self.max_retries,
            now_text or rq_now(),
            int(self.lease * 2) + 60,
        ]

    async def _take_script(self) -> list[Any] | None:
        args = self._take_args()
        raw = await self._script("take")(
            keys=[self._queue_key, self._wip_key, self._claim_key], args=args
        )
        if raw is None:
            return None
        result: list[Any] = [*raw, args[3]]
        return result

    def _start(self, raw: list[Any]) -> None:
        job_id = _text(raw[0])
        execution_id = raw[7]
        running = _Running(
            job_id=job_id,
            execution_id=execution_id,
            started=time.time(),
            reply_key=_reply_key(raw[3]),
            result_ttl=_int_or_none(raw[5]),
            failure_ttl=_int_or_none(raw[6]),
        )
        self._running[running.member] = running
        self.taken += 1
        task = asyncio.create_task(self._run_job(running, raw[1], raw[2], raw[4]))
        running.task = task
        self._jobs_task.add(task)
        task.add_done_callback(self._jobs_task.discard)

    async def _run_job(
        self, running: _Running, data: bytes, timeout_raw: object, deadline_raw: object
    ) -> None:
        try:
            outcome = await self._execute(running, data, timeout_raw, deadline_raw)
        except asyncio.CancelledError:
            return  # stop() hands it back
        except _HandBack as hb:
            logger.info("consumer %s: job %s handed back: %s", self.name, running.job_id, hb)
            await self._hand_back([running])
            return
        except Exception as exc:  # a bug here must not leave the job leased forever
            logger.exception("consumer %s: job %s failed inside qoper8", self.name, running.job_id)
            outcome = self._failure(
                running, JobError(f"qoper8 failed to run job {running.job_id}: {exc!r}")
            )
        await self._write_outcome(running, outcome)

    async def _execute(
        self, running: _Running, data: bytes, timeout_raw: object, deadline_raw: object
    ) -> _Outcome:
        job_id = running.job_id
        try:
            action = decode_job(data, self.pool.handlers)
            timeout = _job_timeout(timeout_raw, deadline_raw)
        except Qoper8Error as exc:
            return self._failure(running, exc)
        if timeout is not None and timeout <= 0:
            return self._failure(
                running,
                JobTimeout(
                    f"job {job_id} waited in rq queue {self.queue!r} past its deadline; "
                    f"it was not run",
                    job_id=job_id,
                ),
            )
        try:
            value = await self.pool.submit(action, timeout=timeout, kill_on_cancel=True)
        except (PoolClosed, StartFailed, QueueFull) as exc:
            raise _HandBack(str(exc)) from None
        except Qoper8Error as exc:
            if isinstance(exc, JobError):
                exc.job_id = job_id
            return self._failure(running, exc)
        return self._success(running, value)

    def _success(self, running: _Running, value: JSONValue) -> _Outcome:
        try:
            encoded = orjson.dumps(value)
        except TypeError as exc:  # a pool result is JSON already; belt and braces
            return self._failure(running, InvalidAction(f"result is not JSON: {exc}"))
        ended = time.time()
        stream: list[str] = [
            "type",
            str(RESULT_SUCCESSFUL),
            "worker_name",
            self.name,
            "execution_id",
            running.execution_id,
            "execution_started_at",
            repr(running.started),
            "execution_ended_at",
            repr(ended),
        ]
        if value is not None:  # rq stores no return_value for None
            stream += ["return_value", base64.b64encode(encoded).decode()]
        reply = b'{"id":' + orjson.dumps(running.job_id) + b',"result":' + encoded + b"}"
        return _Outcome("finished", reply.decode(), [], stream)

    def _failure(self, running: _Running, exc: Qoper8Error) -> _Outcome:
        if isinstance(exc, JobError) and exc.job_id is None:
            exc.job_id = running.job_id
        info = error_to_dict(exc)
        tb = info.get("remote_traceback") or ""
        exc_string = f"{tb.rstrip()}\n" if tb else ""
        exc_string += f"qoper8.{type(exc).__name__}: {exc}"
        err_json = orjson.dumps(info)
        stream: list[str] = [
            "type",
            str(RESULT_FAILED),
            "worker_name",
            self.name,
            "exc_string",
            base64.b64encode(zlib.compress(exc_string.encode())).decode(),
            "execution_id",
            running.execution_id,
            "execution_started_at",
            repr(running.started),
            "execution_ended_at",
            repr(time.time()),
        ]
        # rq reads exc_info zlib-compressed or, failing that, as plain text (Job.restore);
        # plain text travels in the script's JSON argument
        fields = ["exc_info", exc_string, "qoper8_error", err_json.decode()]
        reply = b'{"id":' + orjson.dumps(running.job_id) + b',"error":' + err_json + b"}"
        return _Outcome("failed", reply.decode(), fields, stream)

    async def _write_outcome(self, running: _Running, outcome: _Outcome) -> None:
        job_id = running.job_id
        if outcome.status == "finished":
            ttl = DEFAULT_RESULT_TTL if running.result_ttl is None else running.result_ttl
            registry = self._finished_key
        else:
            ttl = DEFAULT_FAILURE_TTL if running.failure_ttl is None else running.failure_ttl
            registry = self._failed_key
        pool = self.pool
        arg: dict[str, Any] = {
            "id": job_id,
            "m": running.member,
            "x": running.execution_id,
            "s": outcome.status,
            "e": (ended := rq_now()),
            "reg": registry,
            "sc": "+inf" if ttl < 0 else repr(time.time() + ttl),
            "ttl": "-1" if ttl < 0 else str(ttl),
            "rk": running.reply_key,
            "rp": outcome.reply,
            "jf": outcome.job_fields,
            "sf": outcome.stream_fields,
            "w": self._worker_key,
        }
        take_args: list[Any] = []
        if not self._stopping and pool.is_open and pool.has_capacity():
            take_args = arg["t"] = [str(a) for a in self._take_args(ended)]
        args = [orjson.dumps(arg)]
        keys = [self._wip_key, self._queue_key, self._claim_key]
        backoff = _Backoff(f"consumer {self.name} job {job_id}", self.url)
        reply = await _retrying(
            f"consumer {self.name}: recording job {job_id}",
            backoff,
            lambda: self._finisher.call(keys, args),
            self._give_up,
        )
        written, nxt = reply if reply is not None else (None, None)
        running.finished = True
        if nxt:
            self._queue_seen_empty = False
            self._start([*nxt, take_args[3]])  # before this job leaves: the child's slot passes on
        self._running.pop(running.member, None)
        if not nxt:
            self._slot_freed.set()
        self.completed += 1
        if written == 0:
            logger.warning(
                "consumer %s: job %s ended after its lease was gone (reaped and queued "
                "again, or lost with a Redis restart); this outcome (%s) was not recorded, "
                "only sent to a waiting RedisPool if the job itself was gone too",
                self.name,
                job_id,
                outcome.status,
            )

    # ------------------------------------------------------------ leases
    async def _heartbeat_loop(self) -> None:
        backoff = _Backoff(f"consumer {self.name} heartbeat", self.url)
        interval = self.lease * HEARTBEAT_FRACTION
        while True:
            members = list(self._running)
            try:
                lost = await self._script("heartbeat")(
                    keys=[
                        self._wip_key,
                        self._consumers_key,
                        WORKERS_KEY,
                        self._queue_workers_key,
                        self._worker_key,
                    ],
                    args=[
                        time.time() + self._window,
                        self.name,
                        rq_now(),
                        "busy" if members else "idle",
                        int(self.lease * 2) + 60,
                        self._birth,
                        socket.gethostname(),
                        os.getpid(),
                        self.queue,
                        *members,
                    ],
                )
            except Exception as exc:
                if not is_redis_failure(exc):
                    raise
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            for m in lost:
                running = self._running.get(_text(m))
                if running is not None and not running.finished:
                    logger.warning(
                        "consumer %s: lease of job %s was lost (reaped while Redis could not "
                        "be reached?); it may run twice",
                        self.name,
                        running.job_id,
                    )
            await asyncio.sleep(interval)

    async def _reap_loop(self) -> None:
        # Every host reaps; the script is atomic, so two reapers never requeue a job twice.
        backoff = _Backoff(f"consumer {self.name} reaper", self.url)
        interval = self.lease * REAP_FRACTION
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            try:
                await self.reap()
            except Exception as exc:
                if not is_redis_failure(exc):
                    raise
                await backoff.failed(exc)
                continue
            backoff.succeeded()

    async def reap(self, *, now: float | None = None) -> tuple[int, list[str], list[str]]:
        """Hand back dead consumers' claims and queue again (or fail) jobs whose lease
        expired by ``now`` (default: the current time). Returns (claims returned, job ids
        queued again, job ids failed)."""
        now = time.time() if now is None else now
        returned, requeued, failed = await self._script("reap")(
            keys=[self._wip_key, self._queue_key, self._failed_key, self._consumers_key],
            args=[
                now,
                rq_now(),
                DEFAULT_FAILURE_TTL,
                self._reason,
                self._reason_b64,
                self._error_prefix,
                self._error_suffix,
                REAP_BATCH,
            ],
        )
        req = [_text(x) for x in requeued]
        fail = [_text(x) for x in failed]
        if returned or req or fail:
            logger.warning(
                "reaper on %r: %d claimed ids of dead consumers returned, lease expired: "
                "%d queued again %s, %d failed %s",
                self.queue,
                returned,
                len(req),
                req[:10],
                len(fail),
                fail[:10],
            )
        return int(returned), req, fail

    # ------------------------------------------------------------ stopping
    async def _finish_running(self) -> None:
        """After the take loop ended: wait for running jobs up to the grace period, then
        cancel the rest (their children are killed) and hand them back."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.grace
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            remaining = max(0.0, self._stop_deadline - time.monotonic())
            await asyncio.wait(tasks, timeout=remaining)
        leftovers = [r for r in self._running.values() if not r.finished]
        for r in leftovers:
            if r.task is not None:
                r.task.cancel()
        if self._jobs_task:
            await asyncio.wait(list(self._jobs_task), timeout=self.grace + 1)
        await self._hand_back(leftovers, final=True)

    async def _abandon(self) -> None:
        self._stopping = True
        leftovers = [r for r in self._running.values() if not r.finished]
        for r in leftovers:
            if r.task is not None:
                r.task.cancel()
        try:
            async with asyncio.timeout(ABANDON_TIMEOUT):
                await self._hand_back(leftovers, final=True)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.error(
                "consumer %s: cancelled; could not hand back %d jobs (%s); their leases will "
                "expire and the reaper will queue them again",
                self.name,
                len(leftovers),
                exc,
            )

    async def _hand_back(self, jobs: list[_Running], *, final: bool = False) -> None:
        members = [r.member for r in jobs]
        for r in jobs:
            r.finished = True
            self._running.pop(r.member, None)
        self._slot_freed.set()
        backoff = _Backoff(f"consumer {self.name} hand back", self.url)
        deadline = time.monotonic() + max(self.grace, 1.0)
        n = await _retrying(
            f"consumer {self.name}: handing back {len(members)} jobs",
            backoff,
            lambda: self._script("handback")(
                keys=[
                    self._wip_key,
                    self._queue_key,
                    self._claim_key,
                    self._consumers_key,
                    WORKERS_KEY,
                    self._queue_workers_key,
                    self._worker_key,
                ],
                args=[self.name, "1" if final else "0", *members],
            ),
            lambda: time.monotonic() > deadline,
        )
        if n:
            logger.info("consumer %s: handed %s jobs back to %r", self.name, n, self.queue)
        elif n is None and members:
            logger.error(
                "consumer %s: could not hand back %s; their leases will expire and the "
                "reaper will queue them again",
                self.name,
                members,
            )


class _Batcher:
    """Sends the calls of one script made in the same event-loop turn as one pipeline: when
    several children finish together, their outcomes cost one round trip, not one each."""

    def __init__(self, script: Any, client: aioredis.Redis) -> None:
        self._script = script
        self._client = client
        self._pending: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((keys, args, fut))
        return fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                results: list[Any] = [await self._script(keys=keys, args=args)]
            else:
                # EVALSHA by hand: a pipeline given Script objects first asks SCRIPT EXISTS,
                # one more round trip each time. A NOSCRIPT answer (Redis restarted) is
                # retried below through the script, which loads it.
                sha = self._script.sha
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args, _ in batch:
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
                for i, result in enumerate(results):
                    if isinstance(result, NoScriptError):
                        keys, args, _ = batch[i]
                        results[i] = await self._script(keys=keys, args=args)
        except Exception as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:
            for _, _, fut in batch:
                fut.cancel()
            raise
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)


class _HandBack(Exception):
    """The pool could not run the job (closing, broken): give it back untouched."""


def _reply_key(value: object) -> str:
    """A job's reply list, if it names one of ours: a job written by anyone who can reach
    Redis must not make a host push to (and set an expiry on) an arbitrary key."""
    key = _text(value) if value else ""
    return key if key.startswith(REPLY_PREFIX) else ""


def _int_or_none(value: object) -> int | None:
    if value is None or value == b"" or value == "":
        return None
    try:
        return int(float(_text(value)))
    except ValueError:
        return None


_TIMEOUT_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _parse_rq_timeout(text: str) -> float:
    """rq's timeout forms: seconds, or digits and a unit ("90", "5s", "3m", "1h", "2d")."""
    try:
        return float(text)
    except ValueError:
        pass
    unit = _TIMEOUT_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        return float(int(text[:-1]) * unit)
    raise InvalidAction(f"job timeout {text!r} is not a number of seconds nor like '5m'")


def _job_timeout(timeout_raw: object, deadline_raw: object) -> float | None:
    """The job's deadline from now: rq's ``timeout`` (seconds; -1 for none), tightened by
    a RedisPool caller's absolute ``qoper8_deadline``."""
    timeout: float | None = float(DEFAULT_JOB_TIMEOUT)
    if timeout_raw is not None and timeout_raw != b"":
        value = _parse_rq_timeout(_text(timeout_raw))
        timeout = None if value < 0 else value
    if deadline_raw is not None and deadline_raw != b"":
        try:
            left = float(_text(deadline_raw)) - time.time()
        except ValueError:
            raise InvalidAction(f"job deadline {_short(deadline_raw)} is not a number") from None
        timeout = left if timeout is None else min(timeout, left)
    return timeout


# ---------------------------------------------------------------- the submitting side
@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[JSONValue]
    mapping: dict[str, bytes | str | int | float]
    enqueued: bool = False


class RedisClient:
    """Enqueues rq jobs and waits for their outcomes, pushed to this client's reply list.

    One connection blocks in BLPOP on ``qoper8:reply:{client}`` and settles every waiting
    ``submit``; so each job costs two round trips here (enqueue, and its share of BLPOP).
    After Redis comes back from an outage, jobs whose hash vanished (a restart without
    persistence) are enqueued again, so an accepted ``submit`` is not silently lost.
    """

    def __init__(self, url: str, queue: str, *, result_ttl: int | None = None) -> None:
        self.url = url
        self.queue = queue
        self.result_ttl = result_ttl
        self.client_id = uuid.uuid4().hex
        self.reply_key = REPLY_PREFIX + self.client_id
        self._queue_key = QUEUE_PREFIX + queue
        self._redis: aioredis.Redis | None = None
        self._enqueue: Any = None
        self._pending: dict[str, _Pending] = {}
        # redis-py opens a connection per concurrent command: bound them, so that a burst of
        # submits does not open thousands of connections to Redis
        self._enqueue_slots = asyncio.Semaphore(MAX_CLIENT_CONNECTIONS)
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        self._healthy = True
        self._last_error: BaseException | None = None

    async def open(self) -> None:
        self._redis = connect(self.url)
        self._enqueue = self._redis.register_script(ENQUEUE_LUA)
        self._listener = asyncio.create_task(self._listen())

    async def aclose(self) -> None:
        self._closed = True
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(PoolClosed("the RedisPool was closed"))
        self._pending.clear()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.delete(self.reply_key)
        if self._listener is not None:
            # A cancelled BLPOP can sit until its server-side timeout in redis-py; closing
            # the client's connections below ends it at once.
            self._listener.cancel()
            await asyncio.wait([self._listener], timeout=0.05)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            with contextlib.suppress(Exception):
                await self._redis.connection_pool.disconnect()
        if self._listener is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener

    async def submit(self, action: Mapping[str, Any], deadline: float | None) -> JSONValue:
        timeout = deadline
        if self._closed or self._redis is None:
            raise PoolClosed("the RedisPool is closed" if self._closed else "not opened")
        job_id = uuid.uuid4().hex
        mapping = encode_job(
            job_id,
            self.queue,
            action,
            timeout=timeout,
            reply_key=self.reply_key,
            result_ttl=self.result_ttl,
        )
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), mapping)
        self._pending[job_id] = pending
        try:
            async with asyncio.timeout(timeout):
                await self._enqueue_job(job_id, pending)
                return await pending.future
        except TimeoutError:
            raise self._timeout_error(job_id, action, timeout) from None
        finally:
            self._pending.pop(job_id, None)

    def _timeout_error(
        self, job_id: str, action: Mapping[str, Any], timeout: float | None
    ) -> Qoper8Error:
        what = f"job {job_id} ({action.get('type')})"
        if not self._healthy or self._last_error is not None:
            return TransportError(
                f"{what}: Redis at {describe_url(self.url)} could not be reached within the "
                f"deadline of {timeout}s ({self._last_error}); the job may still run"
            )
        return JobTimeout(
            f"{what} got no result within its deadline of {timeout}s on rq queue "
            f"{self.queue!r} (no idle child on any host, or no host serving the queue?)",
            job_id=job_id,
        )

    async def _enqueue_job(self, job_id: str, pending: _Pending) -> None:
        backoff = _Backoff(f"RedisPool {self.client_id[:8]}", self.url)
        args: list[Any] = [job_id]
        for k, v in pending.mapping.items():
            args += [k, v]
        keys = [JOB_PREFIX + job_id, self._queue_key, QUEUES_KEY]
        while True:
            try:
                async with self._enqueue_slots:
                    await self._enqueue(keys=keys, args=args)
            except Exception as exc:
                if not is_redis_failure(exc):
                    raise
                self._last_error = exc
                await backoff.failed(exc)
                continue
            self._last_error = None
            backoff.succeeded()
            pending.enqueued = True
            return

    async def _listen(self) -> None:
        assert self._redis is not None
        backoff = _Backoff(f"RedisPool {self.client_id[:8]} replies", self.url)
        while not self._closed:
            try:
                item = await self._redis.blpop([self.reply_key], BLOCK_SECONDS)
                if not self._healthy:
                    await self._recover()
            except Exception as exc:
                if not is_redis_failure(exc):
                    logger.exception("RedisPool reply listener failed; retrying")
                self._healthy = False
                self._last_error = exc
                await backoff.failed(exc)
                continue
            if not self._healthy:
                self._healthy = True
                self._last_error = None
            backoff.succeeded()
            if item is not None:
                self._settle(bytes(item[1]) if isinstance(item[1], bytes) else b"")

    def _settle(self, payload: bytes) -> None:
        try:
            msg = orjson.loads(payload)
            job_id = msg["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("RedisPool: unreadable reply %r ignored", payload[:200])
            return
        pending = self._pending.get(job_id) if isinstance(job_id, str) else None
        if pending is None or pending.future.done():
            return
        if "error" in msg and isinstance(msg["error"], dict):
            pending.future.set_exception(error_from_dict(msg["error"]))
        elif "result" in msg:
            pending.future.set_result(msg["result"])
        else:
            pending.future.set_exception(TransportError(f"unreadable reply for job {job_id}"))

    async def _recover(self) -> None:
        """After an outage: settle jobs that ended while we could not listen, and enqueue
        again those whose hash vanished (Redis restarted without persistence)."""
        assert self._redis is not None
        ids = [j for j, p in self._pending.items() if p.enqueued and not p.future.done()]
        if not ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(JOB_PREFIX + job_id, ["status", "qoper8_error"])
                pipe.xrevrange(RESULTS_PREFIX + job_id, "+", "-", count=1)
            replies = await pipe.execute()
        lost = 0
        for i, job_id in enumerate(ids):
            (status, error), stream = replies[2 * i], replies[2 * i + 1]
            pending = self._pending.get(job_id)
            if pending is None or pending.future.done():
                continue
            if status is None:
                lost += 1
                pending.enqueued = False
                task = asyncio.create_task(self._enqueue_job(job_id, pending))
                task.add_done_callback(_log_failure)
            elif status == b"finished" and stream:
                value = stream[0][1].get(b"return_value")
                result = orjson.loads(base64.b64decode(value)) if value else None
                pending.future.set_result(result)
            elif status == b"failed":
                pending.future.set_exception(_stored_error(job_id, error))
        if lost:
            logger.warning(
                "RedisPool: %d jobs vanished from Redis during the outage; enqueued again",
                lost,
            )


def _stored_error(job_id: str, error: bytes | None) -> Qoper8Error:
    """The typed error a host stored with a failed job; rq's own cleanup (``rq info`` failing
    an abandoned job) stores none, which reads as a plain ``JobError``."""
    if error:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            return error_from_dict(orjson.loads(error))
    return JobError(f"job {job_id} failed in Redis (abandoned, as rq saw it)", job_id=job_id)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("RedisPool: re-enqueue failed: %s", task.exception())
