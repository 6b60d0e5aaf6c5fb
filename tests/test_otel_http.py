"""OpenTelemetry over the daemon's HTTP API (issue 15 item 4): ``qoper8.Client`` sends the
caller's span as W3C ``traceparent``/``tracestate`` headers, and ``POST /v1/submit`` continues
it: the daemon's pool records its spans under the caller's span and the child runs the job
inside it. The API runs in-process, so its spans reach the test's in-memory exporter; its
server tasks never inherit the test's context, so only the headers can carry the trace."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
import pytest

import qoper8
from qoper8._engine.traced_job import QUEUED_SPAN, RUN_SPAN
from tests.http_support import serving
from tests.otel_support import hex_ids, job_spans, span_exporter, tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

HANDLERS = "tests.otel_handlers:worker"
# A caller's span as another service would send it: version, trace id, span id, sampled.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return span_exporter()


async def test_the_client_sends_the_callers_span_and_the_daemon_continues_it(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setenv("TEST_QOPER8_OTEL_SDK", "1")
    async with asyncio.timeout(15), serving(HANDLERS) as api, qoper8.Client(api.url) as client:
        with tracer().start_as_current_span("caller") as caller:
            inside = await client.submit({"type": "otel.span"})
    assert isinstance(inside, dict)
    assert inside["parent"] == hex_ids(caller), "the handler's span is the caller's child"
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN]
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert span.parent.is_remote, "continued from the headers, not inherited"
        assert span.context is not None
        assert span.context.trace_id == caller.get_span_context().trace_id


async def test_the_daemon_continues_a_traceparent_any_caller_sends(
    exporter: InMemorySpanExporter,
) -> None:
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    async with asyncio.timeout(15), serving(HANDLERS) as api:
        url = api.url + "/v1/submit"
        async with api.session.post(url, json={"type": "otel.seen"}, headers=headers) as resp:
            assert resp.status == 200
            seen = (await resp.json())["result"]
    assert seen == {"imported": True, "valid": True, "trace_id": TRACE_ID, "span_id": SPAN_ID}
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN]
    for span in spans:
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == SPAN_ID
        assert span.context is not None
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert span.context.trace_state.get("vendor") == "1"


@pytest.mark.parametrize(
    "traceparent",
    ["garbage", f"00-{'0' * 32}-{SPAN_ID}-01", f"zz-{TRACE_ID}-{SPAN_ID}-01", "00-" + "f" * 500],
)
async def test_a_malformed_traceparent_is_ignored_and_the_job_runs(
    exporter: InMemorySpanExporter, traceparent: str
) -> None:
    async with asyncio.timeout(15), serving(HANDLERS) as api:
        url = api.url + "/v1/submit"
        body = {"type": "otel.count", "n": 1}
        async with api.session.post(url, json=body, headers={"traceparent": traceparent}) as r:
            assert (r.status, await r.json()) == (200, {"result": 2})
    assert job_spans(exporter) == []


async def test_without_a_span_the_client_sends_no_trace(exporter: InMemorySpanExporter) -> None:
    async with asyncio.timeout(15), serving(HANDLERS) as api, qoper8.Client(api.url) as client:
        seen = await client.submit({"type": "otel.seen"})
    assert seen == {"imported": False, "valid": False}, "no trace context reached the child"
    assert exporter.get_finished_spans() == ()


async def test_the_client_streams_under_the_callers_span_and_the_daemon_continues_it(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setenv("TEST_QOPER8_OTEL_SDK", "1")
    async with asyncio.timeout(15), serving(HANDLERS) as api, qoper8.Client(api.url) as client:
        with tracer().start_as_current_span("caller") as caller:
            async with client.stream({"type": "otel.stream"}) as stream:
                messages = [m async for m in stream]
                result = stream.result
    inside = {"imported": True, "valid": True, **hex_ids(caller)}
    assert messages == [inside], "the child ran the streamed job in the caller's context"
    assert result == inside
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN]
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert span.parent.is_remote, "continued from the headers, not inherited"


async def test_the_stream_route_continues_a_traceparent_any_caller_sends(
    exporter: InMemorySpanExporter,
) -> None:
    headers = {"traceparent": TRACEPARENT, "Accept": "application/x-ndjson"}
    async with asyncio.timeout(15), serving(HANDLERS) as api:
        url = api.url + "/v1/stream"
        async with api.session.post(url, json={"type": "otel.stream"}, headers=headers) as resp:
            assert resp.status == 200
            lines = [orjson.loads(line) async for line in resp.content if line.strip()]
    seen = {"imported": True, "valid": True, "trace_id": TRACE_ID, "span_id": SPAN_ID}
    assert lines == [{"message": seen}, {"result": seen}]
    spans = job_spans(exporter)
    assert [s.name for s in spans] == [QUEUED_SPAN, RUN_SPAN]
    assert all(s.parent is not None and format(s.parent.span_id, "016x") == SPAN_ID for s in spans)
