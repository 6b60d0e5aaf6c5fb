"""OpenTelemetry on the local pool (issue 15 item 4): a job submitted under an active span
carries the caller's trace context to its child and records "qoper8 queued" and "qoper8 run"
spans under the caller's span; without a span nothing is sent or recorded, and without
OpenTelemetry nothing of it is even imported. Spans are read from the SDK's in-memory
exporter; a child's view comes back as a handler's result."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import baggage, context
from opentelemetry.trace import StatusCode

import qoper8
import qoper8.sync
from qoper8._engine.job import Job, JobKind
from qoper8._engine.traced_job import (
    ACTION_TYPE,
    CHILD_ID,
    JOB_ID,
    OUTCOME,
    PID,
    QUEUED_SPAN,
    RUN_SPAN,
)
from tests.conftest import release, wait_until
from tests.otel_handlers import seen_context
from tests.otel_support import hex_ids, job_spans, span_exporter, tracer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

HANDLERS = "tests.otel_handlers:worker"
_NONE = {"trace_id": "0" * 32, "span_id": "0" * 16}  # the ids of no span


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return span_exporter()


@pytest.fixture
async def pool(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[qoper8.Pool]:
    """One child with an OpenTelemetry SDK of its own (set up by the worker's on_start)."""
    monkeypatch.setenv("TEST_QOPER8_OTEL_SDK", "1")
    async with qoper8.Pool(HANDLERS, children=1) as p:
        yield p


@pytest.fixture
async def plain_pool() -> AsyncIterator[qoper8.Pool]:
    """One child that never imports OpenTelemetry unless a trace context reaches it."""
    async with qoper8.Pool(HANDLERS, children=1) as p:
        yield p


def _one_job(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ReadableSpan]:
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN]
    return spans[0], spans[1]


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_job_under_a_span_records_queued_then_run_spans_under_the_callers_span(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller") as caller:
            pid = await pool.submit({"type": "otel.pid"})
    queued, run = _one_job(exporter)
    expected = caller.get_span_context()
    (child,) = pool.statistics().children
    for span in (queued, run):
        assert span.parent is not None
        assert (span.parent.trace_id, span.parent.span_id) == (
            expected.trace_id,
            expected.span_id,
        )
        attributes = _attributes(span)
        assert attributes[ACTION_TYPE] == "otel.pid"
        assert attributes[CHILD_ID] == child.id
        assert attributes[PID] == pid == child.pid
        assert isinstance(attributes[JOB_ID], int)
        assert span.status.status_code is StatusCode.UNSET
    assert _attributes(run)[OUTCOME] == "completed"
    assert OUTCOME not in _attributes(queued), "the queued span ended at dispatch"
    # Queued from submit to dispatch, run from dispatch to the answer, inside the caller's.
    caller_span = next(s for s in exporter.get_finished_spans() if s.name == "caller")
    times = [caller_span.start_time, queued.start_time, queued.end_time]
    times += [run.start_time, run.end_time, caller_span.end_time]
    assert None not in times
    assert times == sorted(times)  # type: ignore[type-var]
    assert queued.end_time == run.start_time


async def test_a_handlers_own_span_in_the_child_is_a_child_of_the_callers_span(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller") as caller:
            inside = await pool.submit({"type": "otel.span"})
            again = await pool.submit({"type": "otel.span"})
        after = await pool.submit({"type": "otel.span"})
    assert isinstance(inside, dict)
    assert isinstance(again, dict)
    assert isinstance(after, dict)
    assert inside["parent"] == hex_ids(caller)
    assert inside["trace_id"] == hex_ids(caller)["trace_id"] == again["trace_id"]
    assert inside["span_id"] != again["span_id"]
    # The context was the job's only: the next job, with no span around it, starts a trace.
    assert after["parent"] is None
    assert after["trace_id"] != inside["trace_id"]


async def test_a_failing_handler_makes_the_run_span_an_error_with_the_childs_exception(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller"), pytest.raises(qoper8.JobFailed):
            await pool.submit({"type": "otel.fail"})
    queued, run = _one_job(exporter)
    assert queued.status.status_code is StatusCode.UNSET
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description is not None
    assert "ValueError" in run.status.description
    assert _attributes(run)[OUTCOME] == "failed"
    (event,) = [e for e in run.events if e.name == "exception"]
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "the handler failed on purpose"
    assert "otel_handlers.py" in str(attributes["exception.stacktrace"])


async def test_params_the_handler_refuses_make_the_outcome_invalid(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller"), pytest.raises(qoper8.InvalidAction):
            await pool.submit({"type": "otel.count", "n": "not a number"})
    _, run = _one_job(exporter)
    assert _attributes(run)[OUTCOME] == "invalid"
    assert run.status.status_code is StatusCode.ERROR


async def test_a_job_past_its_deadline_is_timed_out_on_its_run_span(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller"), pytest.raises(qoper8.JobTimeout):
            await pool.submit({"type": "otel.sleep", "seconds": 30}, timeout=0.2)
    _, run = _one_job(exporter)
    assert _attributes(run)[OUTCOME] == "timed_out"
    assert run.status.status_code is StatusCode.ERROR


async def test_a_child_that_dies_mid_job_makes_the_outcome_died(
    pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller"), pytest.raises(qoper8.ChildDied):
            await pool.submit({"type": "otel.exit"})
    _, run = _one_job(exporter)
    assert _attributes(run)[OUTCOME] == "died"
    assert run.status.status_code is StatusCode.ERROR


async def test_a_job_cancelled_while_queued_records_only_its_queued_span(
    pool: qoper8.Pool, exporter: InMemorySpanExporter, fifo: str
) -> None:
    async with asyncio.timeout(10):
        blocker = asyncio.ensure_future(pool.submit({"type": "otel.block", "path": fifo}))
        await wait_until(lambda: pool.statistics().running == 1, what="the child busy")
        with tracer().start_as_current_span("caller"):
            queued = asyncio.ensure_future(pool.submit({"type": "otel.pid"}))
        await wait_until(lambda: pool.statistics().queue_length == 1, what="a queued job")
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        await release(fifo)
        assert await blocker == "go"
    (span,) = job_spans(exporter)
    assert span.name == QUEUED_SPAN
    attributes = _attributes(span)
    assert attributes[OUTCOME] == "cancelled"
    assert CHILD_ID not in attributes, "it never reached a child"
    assert span.status.status_code is StatusCode.UNSET, "the caller's doing, not an error"


async def test_a_stream_under_a_span_runs_in_the_callers_context_and_records_spans(
    plain_pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller") as caller:
            async with plain_pool.stream({"type": "otel.stream"}) as stream:
                messages = [m async for m in stream]
                result = stream.result
        # The stream may end on seeing the job done, before the job's done-callbacks (its
        # spans) have run: they run at the loop's next turn.
        await wait_until(lambda: len(job_spans(exporter)) == 2, what="the job's spans")
    inside = {"imported": True, "valid": True, **hex_ids(caller)}
    assert messages == [inside]
    assert result == inside
    _, run = _one_job(exporter)
    assert _attributes(run)[ACTION_TYPE] == "otel.stream"
    assert _attributes(run)[OUTCOME] == "completed"


async def test_a_pool_of_roles_traces_a_job_through_the_role_that_runs_it(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setenv("TEST_QOPER8_OTEL_SDK", "1")
    roles = {
        "users": qoper8.Role("tests.roles.users:worker", children=1),
        "otel": qoper8.Role(HANDLERS, children=1),
    }
    async with asyncio.timeout(15), qoper8.Pool(roles=roles) as pool:
        with tracer().start_as_current_span("caller") as caller:
            inside = await pool.submit({"type": "otel.span"})
        (child,) = pool.role("otel").statistics().children
    assert isinstance(inside, dict)
    assert inside["parent"] == hex_ids(caller), "the handler's span is the caller's child"
    assert inside["pid"] == child.pid
    for span in _one_job(exporter):
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert (_attributes(span)[CHILD_ID], _attributes(span)[PID]) == (child.id, child.pid)


async def test_without_a_span_nothing_is_sent_to_the_child_nor_recorded(
    plain_pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        seen = await plain_pool.submit({"type": "otel.seen"})
        job = plain_pool._dispatcher.enqueue(
            JobKind.ACTION, b'{"type":"otel.pid"}', "otel.pid", None, True
        )
        assert job is not None
        await job.future
    assert seen == {"imported": False, "valid": False}, "the child never loaded OpenTelemetry"
    assert type(job) is Job
    assert exporter.get_finished_spans() == ()


async def test_a_context_without_a_valid_span_carries_nothing(
    plain_pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    token = context.attach(baggage.set_baggage("tenant", "a"))
    try:
        async with asyncio.timeout(10):
            seen = await plain_pool.submit({"type": "otel.seen"})
    finally:
        context.detach(token)
    assert seen == {"imported": False, "valid": False}
    assert exporter.get_finished_spans() == ()


async def test_pool_run_carries_the_span_to_the_child_too(
    plain_pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller") as caller:
            seen = await plain_pool.run(seen_context)
    assert seen == {"imported": True, "valid": True, **hex_ids(caller)}
    _, run = _one_job(exporter)
    assert _attributes(run)[OUTCOME] == "completed"


async def test_the_executor_from_another_thread_carries_that_threads_span(
    plain_pool: qoper8.Pool, exporter: InMemorySpanExporter
) -> None:
    executor = plain_pool.executor()
    async with asyncio.timeout(10):
        with tracer().start_as_current_span("caller") as caller:
            # to_thread runs the call in a copy of this context: the thread's span is ours
            seen = await asyncio.to_thread(lambda: executor.submit(seen_context).result(10))
    assert seen == {"imported": True, "valid": True, **hex_ids(caller)}
    _, run = _one_job(exporter)
    assert _attributes(run)[OUTCOME] == "completed"


def test_the_sync_pool_carries_the_calling_threads_span(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    with qoper8.sync.Pool(HANDLERS, children=1) as pool:
        with tracer().start_as_current_span("caller") as caller:
            seen = pool.submit({"type": "otel.seen"})
        assert seen == {"imported": True, "valid": True, **hex_ids(caller)}
        assert pool.submit({"type": "otel.seen"}) == {"imported": True, "valid": False, **_NONE}
    assert [s.name for s in job_spans(exporter)] == [QUEUED_SPAN, RUN_SPAN]


def test_import_qoper8_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, qoper8, qoper8.sync; print(sorted(m for m in sys.modules if 'opentel' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_pool_without_opentelemetry_installed_runs_jobs_and_carries_nothing() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        import qoper8
        from qoper8._engine import tracing

        async def main():
            async with qoper8.Pool("tests.otel_handlers:worker", children=1) as pool:
                print(await pool.submit({"type": "otel.count", "n": 1}))
                print(pool._dispatcher.otel, tracing.carrier())

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.split() == ["2", "None", "None"]
