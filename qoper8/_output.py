"""Children's printed lines on the master's stderr, written from a thread of their own.

A pool without ``on_output`` copies every line its children print to ``sys.stderr``. Writing
there from the event loop would let a slow reader of that stream (a full pipe to a stalled
log collector, a terminal paused with Ctrl-S) block the loop and with it every job. Lines go
into a bounded queue instead; a daemon thread writes them. When the queue is full, lines are
dropped and counted, and the writer says how many when it catches up: losing output is better
than stopping the pool.
"""

from __future__ import annotations

import atexit
import queue
import sys
import threading
from typing import Final

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
        self.dropped = 0  # written by the caller's thread only
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
                    f"[qoper8] {dropped - self._reported} lines of child output dropped: "
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
