"""The daemon's log never makes its caller wait: a stalled handler costs dropped records,
counted and reported, not a stalled event loop."""

from __future__ import annotations

import logging
import threading
import time

from qoper8._engine.output import NonBlockingLog


class _StalledHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.moving = threading.Event()
        self.gave_up = False
        self.messages: list[str] = []
        self.written = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.moving.wait(timeout=20):
            self.gave_up = True
        with self.written:
            self.messages.append(record.getMessage())
            self.written.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self.written:
            return self.written.wait_for(lambda: len(self.messages) >= count, timeout)


def test_a_stalled_log_handler_never_blocks_the_caller() -> None:
    logger = logging.getLogger("qoper8.test.nonblocking")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = _StalledHandler()
    log = NonBlockingLog(logger, handler, max_pending=5)
    try:
        for i in range(40):
            logger.info("record %d", i)  # returns at once although the handler is stuck
        dropped = log.queue_handler.dropped
        assert dropped > 0
        handler.moving.set()
        assert handler.wait_for(40 - dropped), "the queued records were never written"
        logger.warning("after")
    finally:
        assert log.close()  # writes what is queued
    assert not handler.gave_up
    written = [m for m in handler.messages if m.startswith("record ")]
    assert len(written) + dropped == 40
    assert written == sorted(written, key=lambda m: int(m.split()[1]))  # order kept
    assert f"{dropped} log records dropped: the log did not keep up" in handler.messages
    assert handler.messages[-1] == "after"
    assert log.queue_handler not in logger.handlers


def test_closing_gives_up_on_a_stuck_handler() -> None:
    logger = logging.getLogger("qoper8.test.stuck")
    logger.propagate = False
    handler = _StalledHandler()
    log = NonBlockingLog(logger, handler, max_pending=2)
    for i in range(5):
        logger.warning("record %d", i)
    started = time.monotonic()
    assert not log.close(timeout=0.2)  # bounded: a daemon's exit is not held hostage
    assert time.monotonic() - started < 5
    handler.moving.set()  # let the writer thread finish
