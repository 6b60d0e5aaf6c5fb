"""Faults in Redis mode, against real servers: a host SIGKILLed mid-job, Redis restarted
under load, garbage and hostile jobs written straight into Redis, passwords and TLS."""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
import shutil
import subprocess
import zlib
from typing import TYPE_CHECKING, Any

import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

import qoper8
from tests.conftest import wait_until

from .conftest import serving

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import redis

    from .conftest import Host, RedisServer

pytestmark = pytest.mark.redis


async def test_job_of_a_sigkilled_host_completes_elsewhere(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    spawn_host: Callable[..., Awaitable[Host]],
    tmp_path: Path,
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    async with asyncio.timeout(40):
        # a short lease, yet long enough that a loaded machine never stalls host B past
        # two thirds of it (which would requeue the job once more)
        host_a = await spawn_host(redis_url, queue_name, children=1, lease=2.0)
        async with qoper8.RedisPool(redis_url, queue=queue_name) as rp:
            call = asyncio.create_task(
                rp.submit(
                    {"type": "block", "started": str(started), "release": str(release)},
                    timeout=30,
                )
            )
            await wait_until(started.exists, what="host A to start the job")
            first_pid = int(started.read_text())
            host_a.kill()  # master and children, mid-job: nothing is written back
            await host_a.proc.wait()
            release.touch()
            await spawn_host(redis_url, queue_name, children=1, lease=2.0)
            second_pid = await call
    assert second_pid != first_pid
    finished = FinishedJobRegistry(queue_name, connection=sync_redis).get_job_ids()
    assert len(finished) == 1
    job = Job.fetch(finished[0], connection=sync_redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == second_pid
    assert job.retries_left == 2  # one of the three retries was used
    assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []


async def test_abandoned_job_fails_after_its_retries(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    """A consumer whose heartbeats stop (its host died) leaves an expired lease; with no
    retries left, the reaper fails the job with the reason and tells the waiting client."""
    started, release = tmp_path / "started", tmp_path / "release"
    async with asyncio.timeout(30):
        async with (
            qoper8.RedisPool(redis_url, queue=queue_name) as rp,
            serving(redis_url, queue_name, lease=0.6, max_retries=0),
        ):
            call = asyncio.create_task(
                rp.submit(
                    {"type": "block", "started": str(started), "release": str(release)},
                    timeout=20,
                )
            )
            await wait_until(started.exists, what="the job to start")
            # Simulate the host dying: its heartbeats stop; its child keeps running.
            beat = next(t for t in asyncio.all_tasks() if "_heartbeat_loop" in repr(t.get_coro()))
            beat.cancel()
            with pytest.raises(qoper8.JobError, match=r"stopped renewing its 0\.6s lease"):
                await call
            release.touch()
    failed = FailedJobRegistry(queue_name, connection=sync_redis).get_job_ids()
    assert len(failed) == 1
    job = Job.fetch(failed[0], connection=sync_redis, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED
    result = job.latest_result()
    assert result is not None
    assert result.exc_string is not None
    assert "AbandonedJobError" in result.exc_string


async def test_redis_restart_under_load_loses_nothing_acknowledged(
    redis_server: Callable[..., RedisServer], queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qoper8.redis")
    server = redis_server()
    async with asyncio.timeout(60):
        async with (
            serving(server.url, queue_name, children=2, lease=2.0),
            serving(server.url, queue_name, children=2, lease=2.0),
            qoper8.RedisPool(server.url, queue=queue_name) as rp,
        ):
            n = 200
            calls = [
                asyncio.create_task(rp.submit({"type": "add", "a": i, "b": 0}, timeout=40))
                for i in range(n)
            ]
            await wait_until(
                lambda: sum(c.done() for c in calls) >= 20, what="some jobs to complete"
            )
            server.kill()  # SIGKILL, no persistence: everything in Redis is gone
            server.start()  # same port, empty
            results = await asyncio.gather(*calls, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            assert errors == []
            assert results == list(range(n))
            # and the whole system carries on after the outage
            assert await rp.submit({"type": "add", "a": 1, "b": 2}, timeout=10) == 3
    # the outage was logged, once when it began and once when Redis came back
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m for m in messages)
    assert any("is back after" in m for m in messages)


async def test_unreachable_redis_is_a_transport_error_after_the_deadline(
    redis_server: Callable[..., RedisServer],
) -> None:
    server = redis_server()
    url = server.url
    server.kill()
    async with asyncio.timeout(10), qoper8.RedisPool(url, queue="nowhere") as rp:
        with pytest.raises(qoper8.TransportError, match="could not be reached"):
            await rp.submit({"type": "echo"}, timeout=0.5)


async def test_password_in_the_url(
    redis_server: Callable[..., RedisServer], queue_name: str
) -> None:
    server = redis_server(password="s3cr:et")
    async with asyncio.timeout(20):
        async with (
            serving(server.url.replace("s3cr:et", "s3cr%3Aet"), queue_name),
            qoper8.RedisPool(server.url.replace("s3cr:et", "s3cr%3Aet"), queue=queue_name) as rp,
        ):
            assert await rp.submit({"type": "add", "a": 1, "b": 2}, timeout=5) == 3
        bad = server.url.replace("s3cr:et", "wrong")
        async with qoper8.RedisPool(bad, queue=queue_name) as rp:
            with pytest.raises(qoper8.TransportError) as err:
                await rp.submit({"type": "echo"}, timeout=0.5)
            assert "wrong" not in str(err.value)  # passwords never reach messages


async def test_rediss_url(
    redis_server: Callable[..., RedisServer], queue_name: str, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(  # noqa: ASYNC221 (a one-off before the test starts anything)
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = redis_server(tls=(cert, key))
    assert server.url.startswith("rediss://")
    async with asyncio.timeout(20):
        async with (
            serving(server.url, queue_name),
            qoper8.RedisPool(server.url, queue=queue_name) as rp,
        ):
            assert await rp.submit({"type": "add", "a": 2, "b": 2}, timeout=5) == 4


class _Evil:
    """Unpickling this would create a file: the proof that nothing was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


async def test_garbage_and_hostile_jobs_fail_cleanly(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="qoper8.redis")
    marker = tmp_path / "pwned"
    qkey = f"rq:queue:{queue_name}"

    def put(job_id: str, data: bytes | None, **fields: Any) -> str:
        mapping: dict[str, Any] = {"status": "queued", "origin": queue_name, **fields}
        if data is not None:
            mapping["data"] = data
        sync_redis.hset(f"rq:job:{job_id}", mapping=mapping)  # type: ignore[arg-type]
        sync_redis.rpush(qkey, job_id)
        return job_id

    def json_job(func: Any, args: Any = (), kwargs: Any = None, instance: Any = None) -> bytes:
        import json

        return zlib.compress(json.dumps([func, instance, list(args), kwargs or {}]).encode())

    expect_failed = {
        put(f"{queue_name}-notjson", b"\x00garbage\xff"): "not JSON",
        put(f"{queue_name}-pickle", pickle.dumps((_Evil(str(marker)),))): "looks like pickle",
        put(f"{queue_name}-zpickle", zlib.compress(pickle.dumps(_Evil(str(marker))))): "pickle",
        put(f"{queue_name}-bomb", zlib.compress(b" " * (64 * 1024 * 1024))): "inflates",
        put(f"{queue_name}-shape", zlib.compress(b'{"a": 1}')): "not rq's",
        put(f"{queue_name}-string", zlib.compress(b'"add"')): "not rq's",
        put(f"{queue_name}-plain", b'["add", null, [1, 2]]'): "not rq's",
        put(f"{queue_name}-emptydata", b""): "has no data",
        put(f"{queue_name}-system", json_job("os.system", ["touch " + str(marker)])): "os.system",
        put(f"{queue_name}-eval", json_job("builtins.eval", ["1"])): "not a handler registered",
        put(f"{queue_name}-method", json_job("echo", instance={"x": 1})): "instance",
        put(f"{queue_name}-args", json_job("add", [1, 2, 3])): "positional",
        put(f"{queue_name}-dup", json_job("add", [1], {"a": 2, "b": 3})): "by position and",
        put(f"{queue_name}-badtype", json_job(None)): "names no function",
        put(f"{queue_name}-params", json_job("add", [], {"a": "x", "b": 1})): "",
    }
    # rq itself cannot read these jobs (Job.fetch raises), so check the raw hash
    no_data = put(f"{queue_name}-nodata", None, timeout="5")
    bad_timeout = put(f"{queue_name}-timeout", json_job("echo"), timeout="soon")
    minutes = put(f"{queue_name}-minutes", json_job("add", [1, 2]), timeout="3m")
    # ids that must be skipped, not run: no hash at all, a key of the wrong type, and a job
    # already finished
    sync_redis.rpush(qkey, f"{queue_name}-ghost")
    sync_redis.set(f"rq:job:{queue_name}-str", "not a hash")
    sync_redis.rpush(qkey, f"{queue_name}-str")
    put(f"{queue_name}-done", json_job("add", [1, 1]), status="finished")
    # a reply key that is not one of qoper8's: the host must not push to it or expire it
    victim = f"{queue_name}-victim"
    sync_redis.rpush(victim, "precious")
    good = put(f"{queue_name}-good", json_job("add", [20, 22]), timeout="5", qoper8_reply=victim)

    def ended() -> bool:
        status = sync_redis.hget(f"rq:job:{good}", "status")
        others = [sync_redis.hget(f"rq:job:{j}", "status") for j in (bad_timeout, minutes, no_data)]
        return (
            status == b"finished"
            and others == [b"failed", b"finished", b"failed"]
            and all(sync_redis.hget(f"rq:job:{j}", "status") == b"failed" for j in expect_failed)
        )

    async with asyncio.timeout(30), serving(redis_url, queue_name):
        await wait_until(ended, what="every job to end")
    assert not marker.exists()
    # garbage is the job's problem, never mistaken for Redis being away
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert sync_redis.lrange(victim, 0, -1) == [b"precious"]
    assert sync_redis.ttl(victim) == -1
    for job_id, reason in expect_failed.items():
        job = Job.fetch(job_id, connection=sync_redis, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FAILED
        result = job.latest_result()
        assert result is not None
        assert result.exc_string is not None
        assert reason in result.exc_string, (job_id, result.exc_string)
        assert "InvalidAction" in result.exc_string
    assert Job.fetch(good, connection=sync_redis, serializer=JSONSerializer).return_value() == 42
    assert sync_redis.hget(f"rq:job:{queue_name}-done", "status") == b"finished"
    exc_info = sync_redis.hget(f"rq:job:{bad_timeout}", "exc_info")
    assert isinstance(exc_info, bytes)
    assert b"'soon' is not a number" in exc_info  # plain text, which rq also reads
    # a hash without data fails where rq looks, with the reason
    exc_info = sync_redis.hget(f"rq:job:{no_data}", "exc_info")
    assert isinstance(exc_info, bytes)
    assert b"InvalidAction: the job hash has no data" in exc_info
    assert no_data in FailedJobRegistry(queue_name, connection=sync_redis).get_job_ids()
    entries: Any = sync_redis.xrange(f"rq:results:{no_data}")
    [(_, entry)] = entries
    assert entry[b"type"] == b"2"  # rq's Result.Type.FAILED
    assert b"has no data" in zlib.decompress(base64.b64decode(entry[b"exc_string"]))
    assert sync_redis.llen(qkey) == 0
    assert StartedJobRegistry(queue_name, connection=sync_redis).get_job_ids() == []
    # the ids that name no job to run leave one trace: a log line each
    dropped = " ".join(r.getMessage() for r in caplog.records if "dropped" in r.getMessage())
    assert f"{queue_name}-ghost (no job hash" in dropped
    assert f"{queue_name}-str (not a hash)" in dropped
    assert f"{queue_name}-done (status finished)" in dropped
