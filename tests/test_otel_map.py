"""OpenTelemetry on batches (``Pool.map``, issue 15 item 4 with issue 14's map): a batch made
under an active span carries the caller's trace to every job's child and records each job's
"qoper8 queued" and "qoper8 run" spans, as submits do; without a span its jobs are plain
jobs. The check is made once per batch, not per job."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.trace import StatusCode

import qoper8
import qoper8.sync
from qoper8._engine.batch import Batch
from qoper8._engine.job import Job, JobKind
from qoper8._engine.traced_job import JOB_ID, OUTCOME, QUEUED_SPAN, RUN_SPAN, TracedJob
from tests.otel_support import hex_ids, job_spans, span_exporter, tracer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

HANDLERS = "tests.otel_handlers:worker"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return span_exporter()


@pytest.fixture
async def pool() -> AsyncIterator[qoper8.Pool]:
    async with qoper8.Pool(HANDLERS, children=2) as p:
        yield p


def _runs(exporter: InMemorySpanExporter) -> dict[int, ReadableSpan]:
    """The run spans by job id; every job also has its queued span, under the same parent."""
    spans = job_spans(exporter)
    runs = {_attr(s, JOB_ID): s for s in spans if s.name == RUN_SPAN}
    queued = {_attr(s, JOB_ID): s for s in spans if s.name == QUEUED_SPAN}
    assert queued.keys() == runs.keys()
    assert len(spans) == 2 * len(runs)
    return runs


def _attr(span: ReadableSpan, key: str) -> Any:
    return dict(span.attributes or {})[key]


async def test_a_map_under_a_span_carries_it_to_every_job_and_records_their_spans(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller") as caller:
            results = await pool.map([{"type": "otel.seen"}] * 4 + [{"type": "otel.count", "n": 1}])
    inside = {"imported": True, "valid": True, **hex_ids(caller)}
    assert results == [inside] * 4 + [2]
    runs = _runs(exporter)
    assert len(runs) == 5
    for span in job_spans(exporter):
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
    assert {_attr(s, OUTCOME) for s in runs.values()} == {"completed"}


async def test_a_failed_job_of_a_map_makes_its_run_span_an_error(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller"):
            results = await pool.map(
                [{"type": "otel.fail"}, {"type": "otel.count", "n": 2}], return_exceptions=True
            )
    assert isinstance(results[0], qoper8.JobFailed)
    assert results[1] == 3
    failed, done = sorted(_runs(exporter).items())
    assert (_attr(failed[1], OUTCOME), failed[1].status.status_code) == (
        "failed",
        StatusCode.ERROR,
    )
    assert (_attr(done[1], OUTCOME), done[1].status.status_code) == ("completed", StatusCode.UNSET)


async def test_a_map_without_a_span_makes_plain_jobs_and_records_nothing(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        results = await pool.map([{"type": "otel.seen"}] * 3)
        dispatcher = pool._dispatcher
        assert dispatcher.loop is not None
        batch = Batch(1, dispatcher.loop, False)
        dispatcher.enqueue_batch(JobKind.ACTION, [(b'{"type":"otel.pid"}', "otel.pid")], batch, 5)
        await batch.done
        with tracer().start_as_current_span("caller"):
            traced = Batch(1, dispatcher.loop, False)
            dispatcher.enqueue_batch(
                JobKind.ACTION, [(b'{"type":"otel.pid"}', "otel.pid")], traced, 5
            )
        await traced.done
    assert results == [{"imported": False, "valid": False}] * 3
    assert [type(j) for j in batch.jobs] == [Job]
    assert [type(j) for j in traced.jobs] == [TracedJob]
    assert len(_runs(exporter)) == 1, "only the batch made under the span"


def test_the_sync_pools_map_carries_the_calling_threads_span(
    exporter: InMemorySpanExporter,
) -> None:
    with (
        qoper8.sync.Pool(HANDLERS, children=1) as pool,
        tracer().start_as_current_span("caller") as caller,
    ):
        results = pool.map([{"type": "otel.seen"}] * 2)
    assert results == [{"imported": True, "valid": True, **hex_ids(caller)}] * 2
    assert len(_runs(exporter)) == 2
