"""Children's printed lines on the master's stderr, and the daemon's log, written from a
thread of their own.

A pool without ``on_output`` copies every line its children print to ``sys.stderr``. Writing
there from the event loop would let a slow reader of that stream (a full pipe to a stalled
log collector, a terminal paused with Ctrl-S) block the loop and with it every job. Lines go
into a bounded queue instead; a daemon thread writes them. When the queue is full, lines are
dropped and counted, and the writer says how many when it catches up: losing output is better
than stopping the pool. The daemon's log (child lines included) goes the same way through
``NonBlockingLog``.
"""

from __future__ import annotations

import atexit
import copy
import logging
import queue
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Final

from .._text import plural

if TYPE_CHECKING:
    from collections.abc import Callable

# Lines waiting for stderr before new ones are dropped (a few MiB of typical log lines).
MAX_PENDING_LINES: Final = 10_000
# How long the interpreter's exit waits for pending lines to be written.
EXIT_FLUSH_SECONDS: Final = 1.0


class StderrWriter:
    """An ``on_output`` callback that never blocks: prefix the line, queue it, return."""

    def __init__(self, max_pending: int = MAX_PENDING_LINES) -> None:
        self._queue: queue.Queue[str] = queue.Queue(max_pending)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # by the callers' loop threads (several sync pools: a count, not a lock)
        self._reported = 0  # read and written by the writer thread only

    def __call__(self, child_id: int, pid: int, line: str) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(f"[qoper8 child {child_id} pid {pid}] {line}\n")
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._write_forever, name="qoper8-output", daemon=True
            )
            self._thread.start()
            atexit.register(self.flush, EXIT_FLUSH_SECONDS)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every queued line is written (lines queued
        meanwhile count too). Returns whether they were."""
        pending = self._queue
        with pending.all_tasks_done:
            return pending.all_tasks_done.wait_for(lambda: not pending.unfinished_tasks, timeout)

    def _write_forever(self) -> None:
        pending = self._queue
        while True:
            texts = [pending.get()]
            while True:  # everything queued meanwhile goes out in one write
                try:
                    texts.append(pending.get_nowait())
                except queue.Empty:
                    break
            taken = len(texts)
            dropped = self.dropped
            if dropped > self._reported:
                texts.insert(
                    0,
                    f"[qoper8] {plural(dropped - self._reported, 'line')} of child output dropped: "
                    "stderr did not keep up\n",
                )
                self._reported = dropped
            self._write("".join(texts))
            for _ in range(taken):
                pending.task_done()

    @staticmethod
    def _write(text: str) -> None:
        stream = sys.stderr  # looked up each time: it may have been replaced
        if stream is None or not text:
            return
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # closed or broken: the lines are lost, not the pool
            pass


class _Pending:
    """A FIFO of log records bounded at ``max_pending``, and of writer-thread operations
    (reopening the file, the stop mark) that the bound never drops, so they happen exactly
    between the records logged before and after them."""

    def __init__(self, max_pending: int) -> None:
        self._items: deque[logging.LogRecord | Callable[[], object] | None] = deque()
        self._records = 0
        self._max = max_pending
        self._ready = threading.Condition()

    def put_record(self, record: logging.LogRecord) -> bool:
        with self._ready:
            if self._records >= self._max:
                return False
            self._records += 1
            self._items.append(record)
            self._ready.notify()
            return True

    def put_control(self, item: Callable[[], object] | None) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()

    def get(self) -> logging.LogRecord | Callable[[], object] | None:
        with self._ready:
            self._ready.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            if isinstance(item, logging.LogRecord):
                self._records -= 1
            return item


class _DroppingQueueHandler(logging.Handler):
    """Queues records without ever waiting: a full queue drops the record and counts it,
    and the next record that fits is preceded by a warning saying how many were lost."""

    def __init__(self, pending: _Pending) -> None:
        super().__init__()
        self._pending = pending
        self.dropped = 0
        self._reported = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """A copy with the message merged and the traceback as text, ready for any thread
        and formatter (unlike ``QueueHandler.prepare``, the traceback stays apart from the
        message, so the JSON format can give it a field of its own)."""
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        return record

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prepared = self.prepare(record)
        except Exception:
            self.handleError(record)
            return
        if self.dropped > self._reported:
            note = logging.LogRecord(
                "qoper8",
                logging.WARNING,
                __file__,
                0,
                "%s dropped: the log did not keep up",
                (plural(self.dropped - self._reported, "log record"),),
                None,
            )
            if not self._pending.put_record(self.prepare(note)):
                self.dropped += 1
                return
            self._reported = self.dropped
        if not self._pending.put_record(prepared):
            self.dropped += 1


_TRACEBACKS: Final = logging.Formatter()


class NonBlockingLog:
    """Routes loggers' records through a bounded queue to ``handler``, which a thread of
    its own writes: logging from the event loop never waits on a slow file or stderr."""

    def __init__(
        self, logger: logging.Logger, handler: logging.Handler, max_pending: int = MAX_PENDING_LINES
    ) -> None:
        self._pending = _Pending(max_pending)
        self._loggers: list[logging.Logger] = []
        self._handler = handler
        self.queue_handler = _DroppingQueueHandler(self._pending)
        self._thread = threading.Thread(target=self._write_forever, name="qoper8-log", daemon=True)
        self._thread.start()
        self.attach(logger)

    def attach(self, logger: logging.Logger) -> None:
        """Send ``logger``'s records through the queue too."""
        logger.addHandler(self.queue_handler)
        self._loggers.append(logger)

    def call_in_order(self, operation: Callable[[], object]) -> None:
        """Run ``operation`` on the writer thread after the records already queued and
        before the next ones (e.g. reopening the log file after logrotate moved it, so no
        earlier record lands in the new file). Never dropped, never waited for."""
        self._pending.put_control(operation)

    def _write_forever(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            if isinstance(item, logging.LogRecord):
                self._handler.handle(item)
                continue
            try:
                item()
            except Exception:  # a failed operation must not end the log
                sys.stderr.write(f"[qoper8] log operation failed: {sys.exc_info()[1]!r}\n")

    def close(self, timeout: float = EXIT_FLUSH_SECONDS * 5) -> bool:
        """Detach from the loggers, then wait up to ``timeout`` seconds for what is still
        queued to be written. Returns whether it was (a stuck handler is given up on)."""
        for logger in self._loggers:
            logger.removeHandler(self.queue_handler)
        self._pending.put_control(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()
