"""Fast tests of the Redis logic: job decoding, the allowlist, and the Lua scripts run on
fakeredis (with Lua) by a consumer feeding an in-memory pool. The real-server tests are in
the other files; these never replace them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import orjson
import pytest
from redis.exceptions import ResponseError
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from qoper8._redis import RedisClient, RedisConsumer, decode_job, describe_url, encode_job, jobs
from qoper8.errors import InvalidAction
from tests.conftest import wait_until

from .fakes import HANDLERS, FakePool


def data(func: object, args: list[Any] | None = None, kwargs: Any = None) -> bytes:
    return zlib.compress(orjson.dumps([func, None, args or [], kwargs or {}]))


def test_func_name_is_an_action_type_or_a_handler_import_path() -> None:
    assert decode_job(data("add", [1], {"b": 2}), HANDLERS) == {"type": "add", "a": 1, "b": 2}
    assert decode_job(data("workers.users.get_user", [7]), HANDLERS) == {
        "type": "user.get",
        "id": 7,
    }
    assert decode_job(orjson.dumps(["add", None, [1, 2], {}]), HANDLERS)["b"] == 2  # plain


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (data("os.system", ["rm -rf /"]), "'os.system' is not a handler registered"),
        (data("workers.math"), "not a handler registered"),
        (data("add", [1, 2, 3]), "takes 2 positional"),
        (data("add", [1], {"a": 1}), "by position and by name"),
        (data("add", [], {"type": "user.get"}), "conflicts"),
        (b"\x80\x04garbage", "looks like pickle"),
        (zlib.compress(b"[1, 2]"), "not rq's"),
        (b"", "has no data"),
        (zlib.compress(b'"add"'), "not rq's"),
        (zlib.compress(b"\x00" * (jobs.MAX_JOB_BYTES + 10)), "inflates to more than"),
    ],
)
def test_jobs_outside_the_allowlist_or_malformed_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidAction, match=message):
        decode_job(raw, HANDLERS)


def test_rq_timeout_forms() -> None:
    assert jobs._job_timeout(b"90", None) == 90
    assert jobs._job_timeout(b"3m", None) == 180
    assert jobs._job_timeout(b"-1", None) is None
    assert jobs._job_timeout(None, None) == jobs.DEFAULT_JOB_TIMEOUT
    left = jobs._job_timeout(b"90", str(time.time() + 5).encode())
    assert left is not None
    assert 4 < left <= 5
    with pytest.raises(InvalidAction):
        jobs._job_timeout(b"soon", None)


def test_urls_in_messages_hide_the_password() -> None:
    assert describe_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert describe_url("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert describe_url("redis://host:6379") == "redis://host:6379"


def test_encoded_jobs_read_back_through_rq() -> None:
    r = fakeredis.FakeRedis()
    mapping = encode_job("j1", "users", {"type": "user.get", "id": 1}, timeout=2.5, reply_key=None)
    r.hset("rq:job:j1", mapping=mapping)  # type: ignore[arg-type]
    job = Job.fetch("j1", connection=r, serializer=JSONSerializer)
    assert job.func_name == "user.get"
    assert job.kwargs == {"id": 1}
    assert job.args == []
    assert job.timeout == 3
    assert job.get_status() == JobStatus.QUEUED
    assert job.origin == "users"


@pytest.mark.parametrize("size", [10, jobs.COMPRESS_FROM])
def test_small_job_data_is_stored_plain_large_compressed_and_both_read_back(size: int) -> None:
    """zlib.compress costs more than the rest of a small job's encoding: rq reads plain data
    (as it does old jobs), and so do qoper8's hosts."""
    text = "x" * size
    mapping = encode_job(
        "j1", "q", {"type": "add", "a": text, "b": 1}, timeout=None, reply_key=None
    )
    stored = mapping["data"]
    assert isinstance(stored, bytes)
    assert (stored[:1] == b"[") is (size < jobs.COMPRESS_FROM)
    r = fakeredis.FakeRedis()
    r.hset("rq:job:j1", mapping=mapping)  # type: ignore[arg-type]
    assert Job.fetch("j1", connection=r, serializer=JSONSerializer).kwargs == {"a": text, "b": 1}
    assert decode_job(stored, HANDLERS) == {"type": "add", "a": text, "b": 1}


def test_rq_now_writes_rqs_timestamps() -> None:
    assert jobs.rq_now(0.5) == "1970-01-01T00:00:00.500000Z"
    assert jobs.rq_now(86399.999999) == "1970-01-01T23:59:59.999999Z"
    assert jobs.rq_now(86400.25) == "1970-01-02T00:00:00.250000Z"  # the cached second moves on
    before = datetime.now(UTC)
    stamp = datetime.strptime(jobs.rq_now(), jobs.TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)


async def test_consumer_runs_rq_jobs_and_records_rq_outcomes(server: fakeredis.FakeServer) -> None:
    r = fakeredis.FakeRedis(server=server)
    q = Queue("q", connection=r, serializer=JSONSerializer)
    ok = q.enqueue("add", 1, b=2)
    bad = q.enqueue("os.system", "true")
    forget = q.enqueue("add", 2, 2, result_ttl=0)  # rq: keep nothing of a finished job
    keep = q.enqueue("add", 3, 3, result_ttl=-1)  # rq: keep it forever
    consumer = RedisConsumer(FakePool(), url="redis://fake", queue="q", lease=5)
    task = asyncio.create_task(consumer.run())
    await wait_until(
        lambda: (
            ok.get_status() == JobStatus.FINISHED
            and bad.get_status() == JobStatus.FAILED
            and keep.get_status() == JobStatus.FINISHED
            and not r.exists(forget.key)
        ),
        timeout=5,
        what="every outcome",
    )
    await consumer.stop()
    await task
    assert ok.return_value(refresh=True) == 3
    assert 0 < r.ttl(ok.key) <= jobs.DEFAULT_RESULT_TTL
    assert bad.id in FailedJobRegistry("q", connection=r).get_job_ids()
    assert r.ttl(keep.key) == -1
    assert keep.return_value(refresh=True) == 6


async def test_reaper_requeues_expired_leases_then_fails_them(server: fakeredis.FakeServer) -> None:
    r = fakeredis.FakeRedis(server=server)
    q = Queue("q", connection=r, serializer=JSONSerializer)
    job = q.enqueue("add", 1, 2)
    r.hset(job.key, "qoper8_reply", "qoper8:reply:c1")
    pool = FakePool()
    pool.gate.clear()  # the job "runs" until the host "dies"
    dead = RedisConsumer(pool, url="redis://fake", queue="q", lease=0.05, max_retries=1)
    dead._start_client()
    raw = await dead._take_script()
    assert raw is not None
    assert job.get_status() == JobStatus.STARTED
    assert StartedJobRegistry("q", connection=r).get_job_ids(cleanup=False) == [job.id]
    # the host dies: no heartbeat; once the lease expires another host's reaper acts
    reaper = RedisConsumer(FakePool(), url="redis://fake", queue="q", lease=0.05)
    reaper._start_client()
    later = time.time() + 1  # past the 50 ms lease
    assert await reaper.reap(now=later) == (0, [job.id], [])
    assert job.get_status() == JobStatus.QUEUED
    assert r.hget(job.key, "retries_left") == b"0"
    assert r.lrange("rq:queue:q", 0, -1) == [job.id.encode()]
    # taken again, and abandoned again: no retries left, so it fails with the reason
    assert await dead._take_script() is not None
    assert await reaper.reap(now=time.time() + 1) == (0, [], [job.id])
    assert job.get_status() == JobStatus.FAILED
    assert job.id in FailedJobRegistry("q", connection=r).get_job_ids()
    result = job.latest_result()
    assert result is not None
    assert result.exc_string is not None
    assert "AbandonedJobError" in result.exc_string
    raw_reply = r.lpop("qoper8:reply:c1")
    assert isinstance(raw_reply, bytes)
    reply = orjson.loads(raw_reply)
    assert reply["id"] == job.id
    assert reply["error"]["type"] == "JobError"
    assert reply["error"]["job_id"] == job.id


async def test_reaper_returns_a_dead_consumers_claims(server: fakeredis.FakeServer) -> None:
    r = fakeredis.FakeRedis(server=server)
    r.rpush("qoper8:claim:q:gone", "a", "b")
    r.rpush("rq:queue:q", "c")
    r.zadd("qoper8:consumers:q", {"gone": time.time() - 1, "alive": time.time() + 60})
    reaper = RedisConsumer(FakePool(), url="redis://fake", queue="q")
    reaper._start_client()
    assert await reaper.reap() == (2, [], [])
    assert r.lrange("rq:queue:q", 0, -1) == [b"a", b"b", b"c"]
    assert r.zrange("qoper8:consumers:q", 0, -1) == [b"alive"]


def test_redis_pool_imports_without_redis_and_says_so_when_started() -> None:
    """``qoper8._redis`` re-exports lazily: ``qoper8.RedisPool`` constructs without redis
    installed, and only ``start()`` says the extra is missing."""
    code = (
        "import asyncio, sys; sys.modules['redis'] = None; sys.modules['rq'] = None\n"
        "import qoper8\n"
        "pool = qoper8.RedisPool('redis://127.0.0.1:1/0')\n"
        "try:\n"
        "    asyncio.run(pool.start())\n"
        "except qoper8.ConfigError as exc:\n"
        "    print('ConfigError', 'qoper8[redis]' in str(exc))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ConfigError True", out.stderr


async def test_replies_fall_back_to_blpop_on_a_redis_before_7() -> None:
    """BLMPOP (Redis 7) takes every waiting outcome in one round trip; an older Redis does
    not know it, and the client asks BLPOP from then on."""
    client = RedisClient("redis://fake", "q")
    sent: list[str] = []

    class OldRedis:
        def command(self, *args: Any, block: float = 0.0) -> asyncio.Future[Any]:
            sent.append(args[0])
            future = asyncio.get_running_loop().create_future()
            if args[0] == "BLMPOP":
                future.set_exception(ResponseError("unknown command 'BLMPOP', with args ..."))
            else:
                future.set_result([client.reply_key.encode(), b"outcome"])
            return future

    client._replies = OldRedis()  # type: ignore[assignment]
    assert await client._pop() == [b"outcome"]
    assert await client._pop() == [b"outcome"]
    assert sent == ["BLMPOP", "BLPOP", "BLPOP"]
