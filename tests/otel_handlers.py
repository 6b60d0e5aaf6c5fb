"""Handlers that look at OpenTelemetry from inside a child. With ``TEST_QOPER8_OTEL_SDK=1``
the start hook sets up an SDK (a tracer provider exporting nowhere: a handler returns its
span's ids as its result); without it the child has the API alone, and ``seen`` tells
whether a trace context reached it at all."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import qoper8

if TYPE_CHECKING:
    from collections.abc import Generator

worker = qoper8.Worker()


@worker.on_start
def setup_sdk() -> None:
    if os.environ.get("TEST_QOPER8_OTEL_SDK") == "1":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())


def _ids(span_context: Any) -> dict[str, Any]:
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }


@worker.handler("otel.span")
def span() -> dict[str, Any]:
    """Start a span, as a handler's own code would, and say where it sits."""
    from opentelemetry import trace

    with trace.get_tracer("tests").start_as_current_span("handler work") as current:
        parent = getattr(current, "parent", None)
        return {
            **_ids(current.get_span_context()),
            "parent": None if parent is None else _ids(parent),
            "pid": os.getpid(),
        }


def seen_context() -> dict[str, Any]:
    """The trace context this child runs in, without importing OpenTelemetry itself."""
    if "opentelemetry" not in sys.modules:
        return {"imported": False, "valid": False}
    from opentelemetry import trace

    current = trace.get_current_span().get_span_context()
    return {"imported": True, "valid": current.is_valid, **_ids(current)}


@worker.handler("otel.seen")
def seen() -> dict[str, Any]:
    return seen_context()


@worker.handler("otel.stream")
def stream() -> Generator[dict[str, Any], None, dict[str, Any]]:
    """A streaming job: where it runs, as a message and then as its result."""
    yield seen_context()
    return seen_context()


@worker.handler("otel.fail")
def fail() -> None:
    raise ValueError("the handler failed on purpose")


@worker.handler("otel.count")
def count(n: int) -> int:
    return n + 1


@worker.handler("otel.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@worker.handler("otel.exit")
def exit_hard() -> None:
    os._exit(3)


@worker.handler("otel.pid")
def pid() -> int:
    return os.getpid()


@worker.handler("otel.block")
def block(path: str) -> str:
    """Wait until the test writes a line into the FIFO at ``path``."""
    with open(path) as f:
        return f.readline().strip()
