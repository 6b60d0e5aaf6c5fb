"""Redis mode: jobs are rq jobs in rq queues, run by warm qoper8 children.

``RedisConsumer`` feeds one pool from one rq queue: it takes a job only when the pool has an
idle child, leases it in rq's StartedJobRegistry, renews the lease by heartbeat, and writes
the outcome where rq's tools look (job hash, registries, results stream). ``RedisPool`` (over
``RedisClient``) is the submitting side. The modules of this package are the only ones that
import redis; they write rq's data model themselves in Lua (rq is not imported at run time;
the tests read everything back through rq), never import the pool (it is handed one), never
unpickle. This module re-exports their names lazily (``RedisPool`` must import without redis
installed, and say so only when started); the code lives in:

    pool             RedisPool: the public face, validates actions; imports redis when started
    client           RedisClient: enqueues jobs and waits for their outcomes
    whereabouts        the words of a timed-out submit's JobTimeout (where its job stood)
    scripts          rq's key names and the Lua scripts (atomic take, finish, reap...)
    jobs             rq's job data: encode and decode jobs, timeouts (no I/O)
    wire             Wire: one pipelined connection (every command of the consumer and client)
    resp               RESP, the wire format: packing commands, reading replies
    connection       timing, outage detection, backoff, retries
    consumer         RedisConsumer: feeds a pool from an rq queue (its lifecycle), made of
    consumer_base      its settings, key names and the jobs it holds
    taking             taking a job when a child is idle, running it, taking the next
    outcome            a job's outcome as rq records it and RedisPool reads it
    leases             the heartbeat that renews leases; handing jobs back
    reaper             requeuing (or failing) expired leases, dead consumers' claims
    actor_client     RedisPool.actors: named actors on the hosts (create, get, call...),
    actor_calls        its plumbing and calls, and
    actor_events       their events (pub/sub), for callers
    actor_host       ActorHosting: a host's side of actors (claims, leases), run by the
    actor_serving      consumer; serving their calls, over
    actor_local        the local pool's actors
    actor_scripts    the actors' Redis keys (listed there) and Lua scripts
    stream_host        a job's progress into rq's meta and its messages into its stream
    broadcast_host     answering broadcasts with the pool's children's replies
    stream_scripts   the keys, entries, limits and Lua scripts of messages and broadcasts
    stream_reader    RedisStream: what RedisPool.stream yields
    stream_reads       the one blocking connection that reads a client's open streams
    broadcast        RedisPool.broadcast: one request to every host, their answers

Redis keys touched (rq's data model under the prefix ``rq``, plus qoper8's own)::

    rq:queues                        set     queue keys; rq registers each queue here
    rq:queue:{queue}                 list    job ids waiting; producers RPUSH, takers LPOP
    rq:job:{id}                      hash    the rq job: data = zlib(JSON [func, null, args,
                                             kwargs]), status, origin, timeout, retries_left,
                                             started_at, ended_at, worker_name, exc_info, and
                                             qoper8_reply / qoper8_deadline / qoper8_error,
                                             qoper8_cancel (its caller cancelled it with
                                             kill_on_cancel; the host stops it),
                                             qoper8_stream / qoper8_read (its messages'
                                             stream, its reader's position), meta (rq's:
                                             "progress" merged in), qoper8_trace (JSON W3C
                                             trace context: the caller's span, which the
                                             host continues)
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
    qoper8:reply:{client}            list    outcomes pushed to one RedisPool client (BLMPOP)
    qoper8:msgs:{id}                 stream  a job's messages, progress and end, when its
                                             hash has qoper8_stream (entries: stream_scripts);
                                             the reader's position in the hash's qoper8_read;
                                             rq:job:{id}'s meta gets "progress" (any job)
    qoper8:bcast:{queue}             stream  broadcast requests to the queue's hosts
    qoper8:breply:{request}          list    the hosts' answers to one broadcast
    qoper8:sticky:{queue}            hash    sticky broadcast topics and their payloads

Named actors keep their own keys (``qoper8:actors:{queue}``, ``qoper8:actor*:{queue}:...``),
listed in ``actor_scripts``.

Delivery is at least once: a job whose lease expires (its host died or lost Redis) is queued
again, up to ``retries_left`` times, then failed with the reason.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import RedisClient as RedisClient
    from .connection import describe_url as describe_url
    from .consumer import RedisConsumer as RedisConsumer
    from .jobs import decode_job as decode_job
    from .jobs import encode_job as encode_job
    from .pool import RedisPool as RedisPool
    from .scripts import JOB_PREFIX as JOB_PREFIX
    from .scripts import QUEUE_PREFIX as QUEUE_PREFIX
    from .scripts import QUEUES_KEY as QUEUES_KEY

__all__ = [
    "JOB_PREFIX",
    "QUEUES_KEY",
    "QUEUE_PREFIX",
    "RedisClient",
    "RedisConsumer",
    "RedisPool",
    "decode_job",
    "describe_url",
    "encode_job",
]

_LAZY: dict[str, str] = {
    "RedisClient": ".client",
    "describe_url": ".connection",
    "RedisConsumer": ".consumer",
    "decode_job": ".jobs",
    "encode_job": ".jobs",
    "RedisPool": ".pool",
    "JOB_PREFIX": ".scripts",
    "QUEUE_PREFIX": ".scripts",
    "QUEUES_KEY": ".scripts",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
