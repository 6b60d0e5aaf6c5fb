"""The daemon's log: where it goes (a file USR1 can reopen, or stderr), its two formats
(text lines, or one JSON object per line), and its level.

The writing itself happens on a thread of its own (``_output.NonBlockingLog``), so a stalled
disk or stderr never blocks the event loop. What gets logged is decided elsewhere: the pool
logs its children's faults on ``qoper8.*`` loggers with ``extra=`` fields (child, pid,
job_id, action_type, exitcode, signal), the HTTP API its access lines on ``qoper8.access``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import orjson

from .._engine.output import NonBlockingLog

if TYPE_CHECKING:
    from ..config import ServeConfig

__all__ = ["LOG_FORMAT", "DaemonLog", "JsonFormatter", "ReopenableFileHandler"]

LOG_FORMAT: Final = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
# aiohttp's own loggers join the daemon's log from this level up: its errors (a failing
# connection handler) belong there, its per-request INFO lines do not (--access-log has ours).
AIOHTTP_LEVEL: Final = logging.WARNING

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
)
# An extra field whose name is taken by the JSON line's own keys is renamed. The pool's
# `pid` is a child's, while the line's `pid` is the process that logged (the master).
_RENAMED: Final = {"pid": "child_pid"}
_OWN_KEYS: Final = frozenset({"time", "level", "logger", "message", "pid", "traceback", "stack"})


class ReopenableFileHandler(logging.FileHandler):
    """A file handler that USR1 can point at a fresh file after logrotate moved the old one."""

    def reopen(self, path: str | None = None) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            if path is not None:
                self.baseFilename = os.path.abspath(path)
            self.stream = self._open()
        finally:
            self.release()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, RFC 3339), ``level``, ``logger``,
    ``message``, ``pid`` (the process that logged), every ``extra=`` field (a child's pid as
    ``child_pid``), and ``traceback`` when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            name = _RENAMED.get(key, key)
            line[f"extra_{name}" if name in _OWN_KEYS else name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=repr).decode()
        except TypeError:  # text with lone surrogates (bytes that were not UTF-8)
            return json.dumps(line, default=repr, ensure_ascii=True)


class DaemonLog:
    """The log of one daemon: set up from its settings, reopened by USR1, adjusted by HUP,
    closed (flushed, bounded) when it stops."""

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self._queue: NonBlockingLog | None = None
        # (logger, propagate, level) as found, put back by close(): a daemon run in-process
        # (tests, an embedding program) leaves logging as it was.
        self._saved: list[tuple[logging.Logger, bool, int]] = []

    def setup(self, config: ServeConfig) -> None:
        """Send qoper8's log (and aiohttp's warnings) to the log file or stderr."""
        root = logging.getLogger("qoper8")
        web = logging.getLogger("aiohttp")
        self._saved = [(lg, lg.propagate, lg.level) for lg in (root, web)]
        handler: logging.Handler
        if config.log_file is not None:
            handler = ReopenableFileHandler(os.fspath(config.log_file), delay=False)
        else:
            handler = logging.StreamHandler(sys.stderr)
        self._handler = handler
        self.apply(config)
        self._queue = NonBlockingLog(root, handler)
        root.propagate = False
        web.setLevel(AIOHTTP_LEVEL)
        web.propagate = False
        self._queue.attach(web)

    def apply(self, config: ServeConfig) -> None:
        """The level and format from ``config`` (at start-up and on HUP). ``debug`` lowers
        the level to DEBUG, where the pool logs the tracebacks of failed jobs."""
        level = logging.DEBUG if config.debug else config.log_level
        logging.getLogger("qoper8").setLevel(level)
        if self._handler is not None:
            formatter = JsonFormatter() if config.log_format == "json" else None
            self._handler.setFormatter(formatter or logging.Formatter(LOG_FORMAT))

    def move(self, path: str) -> None:
        """HUP named another log file: write there from the next record on."""
        handler = self._handler
        if isinstance(handler, ReopenableFileHandler) and self._queue is not None:
            self._queue.call_in_order(lambda: handler.reopen(path))

    def reopen(self) -> bool:
        """USR1: reopen the log file after the records already queued are written to the
        old one. Returns False when the log is not a file."""
        handler = self._handler
        if not isinstance(handler, ReopenableFileHandler) or self._queue is None:
            return False
        self._queue.call_in_order(handler.reopen)
        return True

    def close(self) -> None:
        """Write what is still queued (bounded), then close the log."""
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        if self._handler is not None:
            self._handler.close()
            self._handler = None
        for lg, propagate, level in self._saved:
            lg.propagate = propagate
            lg.setLevel(level)
        self._saved = []
