"""OpenTelemetry over Redis (issue 15 item 4): ``RedisPool.submit`` under an active span puts
the caller's W3C trace context in the rq job hash (``qoper8_trace``), and the host continues
it: its pool's spans are children of the caller's span, and so is the handler's own span in
the child. The host runs in-process (its tasks never inherit the test's context, so only the
job hash can carry the trace) against the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from rq import Queue
from rq.serializers import JSONSerializer

import qoper8
from qoper8._engine.traced_job import QUEUED_SPAN, RUN_SPAN
from qoper8._redis import RedisConsumer
from tests.conftest import wait_until
from tests.otel_support import hex_ids, job_spans, span_exporter, tracer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import redis
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from rq.job import Job

pytestmark = pytest.mark.redis

HANDLERS = "tests.otel_handlers:worker"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
OTHER_SPAN_ID = "b7ad6b7169203331"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return span_exporter()


@contextlib.asynccontextmanager
async def _host(url: str, queue: str) -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue)
        task = asyncio.create_task(consumer.run())
        try:
            yield pool
        finally:
            await consumer.stop()
            await task


def _finished(job: Job) -> bool:
    return bool(job.get_status(refresh=True) == "finished")


def _job_hashes(client: redis.Redis, queue: str) -> list[dict[bytes, bytes]]:
    members: list[Any] = client.zrange(f"rq:finished:{queue}", 0, -1)
    ids = [bytes(m).decode().split(":")[0] for m in members]
    return [client.hgetall(f"rq:job:{i}") for i in ids]  # type: ignore[misc]


async def test_redis_pool_carries_the_callers_span_to_the_host_and_its_child(
    redis_url: str,
    queue_name: str,
    sync_redis: redis.Redis,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_QOPER8_OTEL_SDK", "1")
    async with (
        asyncio.timeout(20),
        _host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        with tracer().start_as_current_span("caller") as caller:
            inside = await rp.submit({"type": "otel.span"}, timeout=10)
    assert isinstance(inside, dict)
    assert inside["parent"] == hex_ids(caller), "the handler's span is the caller's child"
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN]
    for span in spans:
        assert span.parent is not None
        assert span.parent.is_remote, "continued from the job hash, not inherited"
        assert span.parent.span_id == caller.get_span_context().span_id
    (job,) = _job_hashes(sync_redis, queue_name)
    carried = orjson.loads(job[b"qoper8_trace"])
    ids = hex_ids(caller)
    assert list(carried) == ["traceparent"]
    assert carried["traceparent"].startswith(f"00-{ids['trace_id']}-{ids['span_id']}-")


async def test_without_a_span_the_job_hash_carries_no_trace(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, exporter: InMemorySpanExporter
) -> None:
    async with (
        asyncio.timeout(20),
        _host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        seen = await rp.submit({"type": "otel.seen"}, timeout=10)
    assert seen == {"imported": False, "valid": False}
    (job,) = _job_hashes(sync_redis, queue_name)
    assert b"qoper8_trace" not in job
    assert exporter.get_finished_spans() == ()


async def test_a_host_continues_a_trace_any_producer_writes_and_ignores_garbage(
    redis_url: str, queue_name: str, sync_redis: redis.Redis, exporter: InMemorySpanExporter
) -> None:
    """A plain rq producer may set ``qoper8_trace`` itself; a malformed one is ignored. The
    host takes the first job with the take script and the next ones with the finish of the
    one before (one child): the trace comes through both."""
    queue = Queue(queue_name, connection=sync_redis, serializer=JSONSerializer)
    carried = {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}
    later = {"traceparent": f"00-{TRACE_ID}-{OTHER_SPAN_ID}-01"}
    fields: list[Any] = [orjson.dumps(carried), b"{not json", orjson.dumps(later), b'["a"]', b""]
    jobs = []
    for value in fields:
        job = queue.enqueue("otel.seen")
        sync_redis.hset(f"rq:job:{job.id}", "qoper8_trace", value)
        jobs.append(job)
    async with asyncio.timeout(20), _host(redis_url, queue_name):
        for job in jobs:
            await wait_until(partial(_finished, job), what=f"rq job {job.id} finished")
    results: list[Any] = [job.return_value(refresh=True) for job in jobs]
    seen = {"imported": True, "valid": True, "trace_id": TRACE_ID}
    assert results[0] == {**seen, "span_id": SPAN_ID}
    assert results[2] == {**seen, "span_id": OTHER_SPAN_ID}
    for other in (results[1], *results[3:]):
        assert other["valid"] is False
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN] * 2
    parents = [format(s.parent.span_id, "016x") for s in spans if s.parent is not None]
    assert parents == [SPAN_ID, SPAN_ID, OTHER_SPAN_ID, OTHER_SPAN_ID]


async def test_redis_pool_stream_carries_the_callers_span_to_the_host_and_its_child(
    redis_url: str, queue_name: str, exporter: InMemorySpanExporter
) -> None:
    """A streamed job (its host writes its messages to a Redis stream) continues the trace
    too: the job hash carries it whatever the host runs the job with."""
    async with (
        asyncio.timeout(20),
        _host(redis_url, queue_name),
        qoper8.RedisPool(redis_url, queue=queue_name) as rp,
    ):
        with tracer().start_as_current_span("caller") as caller:
            async with rp.stream({"type": "otel.stream"}, timeout=10) as stream:
                messages = [m async for m in stream]
                result = stream.result
        await wait_until(lambda: len(job_spans(exporter)) == 2, what="the host's spans")
    inside = {"imported": True, "valid": True, **hex_ids(caller)}
    assert messages == [inside], "the child ran the streamed job in the caller's context"
    assert result == inside
    for span in job_spans(exporter):
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
