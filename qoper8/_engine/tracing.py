"""OpenTelemetry's trace context across qoper8's hops: read where a job is made, carried as W3C
``traceparent``/``tracestate``, and continued where the job arrives (a child, the daemon, a
Redis host). What records spans is ``traced_job``.

Off, and free, without ``opentelemetry-api``: nothing here imports it at module level (a
child loads this module only when a TRACE frame arrives), and every function answers "no
trace" when it is missing. The carrier is W3C trace context whatever propagators the process
configured: it is qoper8's own wire format between its own processes, so both ends must agree
on it without sharing any configuration.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["TRACEPARENT", "TRACESTATE", "TRACE_FIELDS", "carrier", "continued", "reader"]

# The W3C fields (HTTP headers, and the keys of every carrier qoper8 writes). Renaming them
# breaks every caller that sends them: they are the standard's names, not qoper8's.
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
TRACE_FIELDS: Final = (TRACEPARENT, TRACESTATE)

_UNKNOWN: Final[Any] = object()
_reader: Any = _UNKNOWN  # reader()'s answer, found once per process
_propagator: Any = None


def reader() -> Callable[[], Mapping[str, object]] | None:
    """A function that returns OpenTelemetry's current context, or None when
    ``opentelemetry-api`` is not installed. The context is an empty mapping until something
    attaches one (a span made current, an extracted parent): an empty one carries no trace,
    which is the one test the master makes per job.

    The first call imports ``opentelemetry.context`` if it is installed (about 10 ms, once
    per process; the pool makes it at start, not on a job's way).
    """
    global _reader
    if _reader is _UNKNOWN:
        _reader = _find_reader()
    found: Callable[[], Mapping[str, object]] | None = _reader
    return found


def _find_reader() -> Callable[[], Mapping[str, object]] | None:
    try:
        from opentelemetry import context
    except ImportError:
        return None
    # The context variable behind context.get_current(), read directly: one C call per job
    # instead of two Python calls. Private names, hence the public function as the fallback
    # (another runtime context configured, or a version that renamed them).
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if isinstance(var, contextvars.ContextVar):
        get: Callable[[], Mapping[str, object]] = var.get
        return get
    return context.get_current


def carrier(context: Mapping[str, object] | None = None) -> dict[str, str] | None:
    """The W3C trace context of ``context`` (default: the current one) when a valid span is
    active in it, as ``{"traceparent": ..., "tracestate": ...}``; else None. Never imports
    the tracing API when OpenTelemetry is missing or nothing is attached."""
    if context is None:
        get = reader()
        if get is None:
            return None
        context = get()
    if not context:
        return None
    from opentelemetry import trace

    otel_context: Any = context
    if not trace.get_current_span(otel_context).get_span_context().is_valid:
        return None
    out: dict[str, str] = {}
    _w3c().inject(out, context=otel_context)
    return out or None


def _w3c() -> Any:
    global _propagator
    if _propagator is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _propagator = TraceContextTextMapPropagator()
    return _propagator


@contextlib.contextmanager
def continued(source: Mapping[str, Any] | bytes | str | None) -> Iterator[None]:
    """Run the block inside the trace a caller sent, so that the spans started in it (the
    pool's, a handler's) are children of the caller's span.

    ``source`` is what arrived: HTTP headers, or the JSON of a TRACE frame or of a Redis
    job's ``qoper8_trace``. Nothing happens without OpenTelemetry, without a well-formed
    ``traceparent`` (input from a network is never trusted to parse), or when the current
    span already belongs to that trace (a server instrumentation continued it first).
    """
    context = _remote(source)
    if context is None:
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def _remote(source: Mapping[str, Any] | bytes | str | None) -> Any:
    """The OpenTelemetry context ``source`` describes, or None (see ``continued``)."""
    if not source:
        return None
    if isinstance(source, bytes | str):
        try:
            source = orjson.loads(source)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(source, dict):
            return None
    parent = source.get(TRACEPARENT)
    if not isinstance(parent, str) or reader() is None:
        return None
    fields = {TRACEPARENT: parent}
    state = source.get(TRACESTATE)
    if isinstance(state, str):
        fields[TRACESTATE] = state
    from opentelemetry import trace

    try:
        context = _w3c().extract(fields)
    except Exception:  # a malformed header from anyone must not fail the job
        return None
    remote = trace.get_current_span(context).get_span_context()
    if not remote.is_valid:
        return None
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == remote.trace_id:
        return None
    return context
