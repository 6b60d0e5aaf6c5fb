"""The trace context's hops without a pool: the child's loop and its TRACE frame, in-process
over a socketpair, and ``continued()`` on what a network may send."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from opentelemetry import trace

from qoper8._engine import child_loop as _child_loop
from qoper8._engine import child_main as _child_main
from qoper8._engine import protocol as proto
from qoper8._engine.protocol import Kind
from qoper8._engine.tracing import carrier, continued
from qoper8._engine.worker import load_worker
from tests.otel_support import span_exporter, tracer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACE = proto.dumps({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"})
SEEN = proto.dumps({"type": "otel.seen"})


class _Child:
    """A child's loop on a thread (a fresh context, as a child process has)."""

    def __init__(self) -> None:
        self.master, end = socket.socketpair()
        self.result: list[object] = []
        self.reader = proto.FrameReader(1 << 20)
        self.thread = threading.Thread(target=self._run, args=(end,))
        self.thread.start()

    def _run(self, sock: socket.socket) -> None:
        channel = _child_main.Channel(sock, limit=1 << 20)
        worker = load_worker("tests.otel_handlers:worker")
        try:
            self.result.append(_child_loop.ChildLoop(channel, worker, False).run())
        except Exception as exc:
            self.result.append(exc)
        finally:
            channel.close()

    def ask(self, data: bytes) -> tuple[int, int, Any]:
        self.master.sendall(data)
        frames: list[tuple[int, int, int, bytes]] = []
        while not frames:
            frames = self.reader.feed(self.master.recv(65536))
        kind, job_id, _, payload = frames[0]
        return kind, job_id, proto.loads(payload)

    def end(self) -> object:
        self.thread.join(10)
        self.master.close()
        assert not self.thread.is_alive()
        return self.result[0]


def test_a_trace_frame_runs_its_job_inside_the_carried_context_and_only_that_job() -> None:
    child = _Child()
    traced = proto.frame(Kind.TRACE, 5, TRACE) + proto.frame(Kind.ACTION, 5, SEEN)
    assert child.ask(traced) == (
        Kind.RESULT,
        5,
        {"imported": True, "valid": True, "trace_id": TRACE_ID, "span_id": SPAN_ID},
    )
    kind, job_id, seen = child.ask(proto.frame(Kind.ACTION, 6, SEEN))
    assert (kind, job_id, seen["valid"]) == (Kind.RESULT, 6, False)
    child.master.shutdown(socket.SHUT_WR)
    assert child.end() == _child_loop.EXIT_OK


def test_a_trace_frame_followed_by_another_jobs_frame_is_a_protocol_error() -> None:
    child = _Child()
    child.master.sendall(proto.frame(Kind.TRACE, 5, TRACE) + proto.frame(Kind.ACTION, 6, SEEN))
    error = child.end()
    assert isinstance(error, proto.ProtocolError)
    assert "TRACE for job 5" in str(error)


def test_a_trace_frame_then_the_masters_end_stops_the_child_cleanly() -> None:
    child = _Child()
    child.master.sendall(proto.frame(Kind.TRACE, 5, TRACE))
    child.master.shutdown(socket.SHUT_WR)
    assert child.end() == _child_loop.EXIT_OK


def _current() -> tuple[str, str]:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


@pytest.mark.parametrize(
    "source",
    [
        None,
        b"",
        b"{not json",
        b'["a", "list"]',
        b'{"traceparent": 7}',
        {"tracestate": "a=1"},
        {"traceparent": "00-" + "0" * 32 + "-" + SPAN_ID + "-01"},
        {"traceparent": ["not", "a", "string"]},
    ],
)
def test_continued_ignores_what_carries_no_valid_trace(source: Any) -> None:
    with continued(source):
        assert not trace.get_current_span().get_span_context().is_valid


def test_continued_attaches_a_remote_parent_for_the_block_only() -> None:
    with continued(TRACE):
        assert _current() == (TRACE_ID, SPAN_ID)
        assert carrier() == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}
    assert not trace.get_current_span().get_span_context().is_valid
    assert carrier() is None


def _remote_parent(headers: dict[str, str]) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(headers)


def test_continued_keeps_a_span_of_the_same_trace_and_replaces_another() -> None:
    span_exporter()  # the SDK: real spans
    headers = {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}
    # A server instrumentation continued the trace already: its span stays current.
    server = tracer().start_span("server", context=_remote_parent(headers))
    with trace.use_span(server, end_on_exit=True), continued(headers):
        assert _current() == (TRACE_ID, format(server.get_span_context().span_id, "016x"))
    with tracer().start_as_current_span("unrelated"), continued(headers):
        assert _current() == (TRACE_ID, SPAN_ID)
