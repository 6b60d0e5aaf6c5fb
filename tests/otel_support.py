"""The test process's OpenTelemetry SDK: one tracer provider for the whole session (the API
allows one global provider per process), exporting to memory; each test clears it first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from qoper8._engine.traced_job import QUEUED_SPAN, RUN_SPAN

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

_exporter: InMemorySpanExporter | None = None


def span_exporter() -> InMemorySpanExporter:
    """The session's in-memory exporter, emptied."""
    global _exporter
    if _exporter is None:
        provider = TracerProvider()
        _exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    return _exporter


def tracer() -> trace.Tracer:
    return trace.get_tracer("tests")


def job_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """qoper8's spans, in the order they ended."""
    return [s for s in exporter.get_finished_spans() if s.name in (QUEUED_SPAN, RUN_SPAN)]


def hex_ids(span: trace.Span | ReadableSpan) -> dict[str, str]:
    """A span's ids as the test handlers report them."""
    context = span.get_span_context()
    assert context is not None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
