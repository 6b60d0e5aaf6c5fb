"""Redis transport: jobs are rq jobs in rq queues, run by warm qoper8 children.

``RedisConsumer`` feeds one pool from one rq queue: it takes a job only when the pool has an
idle child, leases it in rq's StartedJobRegistry, renews the lease by heartbeat, and writes
the outcome where rq's tools look (job hash, registries, results stream). ``RedisClient`` is
the submitting side behind ``qoper8.RedisPool``. The modules of this transport are the only
ones that import redis; they write rq's data model themselves in Lua (rq is not imported at run
time; the tests read everything back through rq), never import the pool (it is handed one),
never unpickle. This module re-exports their names; the code lives in:

    _rq_scripts          rq's key names and the Lua scripts (atomic take, finish, reap...)
    _rq_jobs             rq's job data: encode and decode jobs, timeouts (no I/O)
    _redis_connection    connecting, outage detection, backoff, retries, pipelined scripts
    _redis_consumer      RedisConsumer: feeds a pool from an rq queue (its lifecycle), made of
    _redis_consumer_base   its settings, key names and the jobs it holds
    _redis_taking          taking a job when a child is idle, running it, taking the next
    _redis_outcome         a job's outcome as rq records it and RedisPool reads it
    _redis_leases          the heartbeat that renews leases; handing jobs back
    _redis_reaper          requeuing (or failing) expired leases, dead consumers' claims
    _redis_client        RedisClient: enqueues jobs and waits for their outcomes

Redis keys touched (rq's data model under the prefix ``rq``, plus three of qoper8's own)::

    rq:queues                        set     queue keys; rq registers each queue here
    rq:queue:{queue}                 list    job ids waiting; producers RPUSH, takers LPOP
    rq:job:{id}                      hash    the rq job: data = zlib(JSON [func, null, args,
                                             kwargs]), status, origin, timeout, retries_left,
                                             started_at, ended_at, worker_name, exc_info, and
                                             qoper8_reply / qoper8_deadline / qoper8_error,
                                             qoper8_cancel (its caller cancelled it with
                                             kill_on_cancel; the host stops it),
                                             qoper8_trace (JSON W3C trace context: the
                                             caller's span, which the host continues)
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
    qoper8:consumers:{queue}         zset    consumer names scored by registration expiry
                                             (two heartbeats); the reaper hands a lapsed
                                             consumer's claims back and removes it from
                                             rq's worker registry
    qoper8:reply:{client}            list    outcomes pushed to one RedisPool client (BLPOP)

Delivery is at least once: a job whose lease expires (its host died or lost Redis) is queued
again, up to ``retries_left`` times, then failed with the reason.
"""

from __future__ import annotations

from ._redis_client import RedisClient as RedisClient
from ._redis_connection import _Batcher as _Batcher
from ._redis_connection import connect as connect
from ._redis_connection import describe_url as describe_url
from ._redis_consumer import RedisConsumer as RedisConsumer
from ._rq_jobs import DEFAULT_JOB_TIMEOUT as DEFAULT_JOB_TIMEOUT
from ._rq_jobs import DEFAULT_RESULT_TTL as DEFAULT_RESULT_TTL
from ._rq_jobs import MAX_JOB_BYTES as MAX_JOB_BYTES
from ._rq_jobs import _job_timeout as _job_timeout
from ._rq_jobs import decode_job as decode_job
from ._rq_jobs import encode_job as encode_job
from ._rq_scripts import JOB_PREFIX as JOB_PREFIX
from ._rq_scripts import QUEUE_PREFIX as QUEUE_PREFIX
from ._rq_scripts import QUEUES_KEY as QUEUES_KEY

__all__ = ["RedisClient", "RedisConsumer", "decode_job", "describe_url"]
