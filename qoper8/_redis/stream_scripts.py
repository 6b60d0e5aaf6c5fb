"""Keys, limits and Lua scripts of a Redis job's messages (progress, streams) and of
broadcasts across hosts: what ``stream_host``, ``stream_reader`` and ``broadcast*`` share.

A job asks for its messages with the ``qoper8_stream`` field of its rq job hash: ``"1"``
(messages and progress: ``RedisPool.stream``) or ``"p"`` (progress only:
``RedisPool.submit(on_progress=...)``). Its host then appends them to a Redis stream of its
own, ``qoper8:msgs:{job id}``, one entry per item, ``KIND VALUE n N`` (in this order: readers
read them by position), ``N`` its number within the execution (0, 1, 2...), where KIND is::

    s  execution id       an execution starts (n = 0)
    m  message (JSON)     job.send() or a generator handler's yield
    p  progress (JSON)    the newest job.progress() value (paced)
    e  reply (JSON)       the end: {"id", "result"} or {"id", "error"}, as on the reply list
    l  execution id       that execution was lost (its host died or stopped): the reaper
                          (n = 0) or the host handing the job back writes it

Whatever a job does, ``meta["progress"]`` of its rq job hash holds its newest progress, so
that rq users read it with ``Job.fetch(...).get_meta()``.
"""

from __future__ import annotations

from typing import Final

from .jobs import DEFAULT_RESULT_TTL

__all__ = [
    "ACK_LUA",
    "APPEND_LUA",
    "BCAST_PREFIX",
    "BREPLY_PREFIX",
    "META_LUA",
    "MSGS_PREFIX",
    "STICKY_PREFIX",
    "STREAM_MAXLEN",
    "STREAM_WINDOW",
]

MSGS_PREFIX: Final = "qoper8:msgs:"
BCAST_PREFIX: Final = "qoper8:bcast:"  # stream: broadcast requests to a queue's hosts
BREPLY_PREFIX: Final = "qoper8:breply:"  # list: the hosts' answers to one broadcast
STICKY_PREFIX: Final = "qoper8:sticky:"  # hash: a queue's sticky topics and payloads

# Entries a job's stream keeps (XADD MAXLEN ~). Redis memory per job is bounded by this
# times the largest message; smaller makes a slow reader stall the host sooner.
STREAM_MAXLEN: Final = 1000
# Entries a host writes beyond what its reader has acknowledged before it stops reading
# the job's messages (then the child blocks in send()). Must stay well below STREAM_MAXLEN,
# or trimming would drop entries nobody has read.
STREAM_WINDOW: Final = STREAM_MAXLEN // 2
# While a job runs its stream lives at least this long after each write (a job without a
# deadline may be silent for long); once it ends, as long as its result.
STREAM_RUNNING_TTL: Final = 3600
# A stream outlives its job's end at least this long, even when the result does not (rq's
# result_ttl=0 deletes it at once): a reader a little behind still reads it to its end.
STREAM_END_MIN_TTL: Final = 60
# Broadcast requests a queue's stream keeps; hosts read them as they come.
BCAST_MAXLEN: Final = 100
# How long a broadcast's reply list outlives a caller that stopped waiting.
BREPLY_TTL: Final = 60
assert STREAM_RUNNING_TTL >= DEFAULT_RESULT_TTL

# Append entries to a job's stream and refresh its expiry; answers what the job's reader
# has acknowledged (its ``qoper8_read`` field: "{execution}:{n}", "-1" once it left, or
# nothing), so that a host learns it with each write rather than by asking. Entries are
# numbered on from the first's n, their kinds one letter each in one argument: a third of
# the arguments to pack of a (kind, n, value) triple each.
# KEYS: stream, job. ARGV: maxlen, ttl (-1 persist, 0 delete), first n, kinds, values...
APPEND_LUA: Final = """
local first, kinds = tonumber(ARGV[3]), ARGV[4]
for i = 1, #kinds do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', string.sub(kinds, i, i),
             ARGV[4 + i], 'n', first + i - 1)
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
elseif ttl == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('PERSIST', KEYS[1])
end
return redis.pcall('HGET', KEYS[2], 'qoper8_read')
"""

# Replace ``meta`` of an rq job hash only if it still holds what the host read (compare and
# set): a host never overwrites what anyone else wrote there (rq's worker saving a stale
# copy over a job's own meta was rq issues #784, #610, #703), it merges again. Only while
# this host runs the job (status started, its worker name).
# KEYS: job. ARGV: expected meta ('' for none), new meta, worker name.
# Returns {1} written, {0, current meta or ''} changed meanwhile, {-1} not ours any more.
META_LUA: Final = """
local f = redis.pcall('HMGET', KEYS[1], 'status', 'worker_name', 'meta')
if f.err or f[1] ~= 'started' or f[2] ~= ARGV[3] then return {-1} end
local cur = f[3] or ''
if cur ~= ARGV[1] then return {0, cur} end
redis.call('HSET', KEYS[1], 'meta', ARGV[2])
return {1}
"""

# A reader's position ("{execution}:{n}", or "-1": it left, and its host stops writing
# messages nobody reads), kept in the job hash; never recreates a hash that is gone (a
# withdrawn or expired job).
# KEYS: job. ARGV: position.
ACK_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.pcall('HSET', KEYS[1], 'qoper8_read', ARGV[1])
end
return 1
"""
