"""The loop inside a child: load the worker module, say READY, then run one action at a time.

Run as ``python -m qoper8._engine.child_main MASTER_PID CHANNEL_FD``. This
module imports only the stdlib, ``_protocol`` and ``_worker`` (pydantic once a handler
validates), never the pool, the daemon or redis, so that a child starts fast.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from . import protocol as proto
from .main_module import import_main
from .protocol import Kind
from .reports import MAX_LOC_CHARS, clip, error_report
from .worker import ActionRefused, Worker, load_worker

if TYPE_CHECKING:
    from ..errors import ErrorEntry

# Exit codes the master interprets; a start failure is also reported as a frame.
EXIT_OK: Final = 0
EXIT_START_FAILED: Final = 3
EXIT_PROTOCOL_ERROR: Final = 4
EXIT_ORPHANED: Final = 5

_PR_SET_PDEATHSIG: Final = 1
RECV_SIZE: Final = 64 * 1024
# Kinds used per job, bound once: reading a member off an Enum class is slow in Python 3.11.
_ACTION: Final = Kind.ACTION
_CALL: Final = Kind.CALL
_RESULT: Final = Kind.RESULT
_INVALID: Final = proto.ErrorCategory.INVALID.value
_FAILED: Final = proto.ErrorCategory.FAILED.value
# How often the portable orphan watchdog checks its parent where the kernel cannot signal us.
_ORPHAN_POLL_SECONDS: Final = 0.5


def _die_with_master(master_pid: int) -> None:
    """Make sure this child cannot outlive its master, even inside a blocking handler.

    On Linux the kernel sends SIGKILL when the parent thread dies (PR_SET_PDEATHSIG); the
    master spawns children from one long-lived thread for exactly that reason. Elsewhere a
    daemon thread polls the parent pid. Either way, a master that died before we got here
    means exit now.
    """
    armed = False
    if sys.platform == "linux":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != master_pid:
        os._exit(EXIT_ORPHANED)
    if not armed:

        def watch() -> None:
            while os.getppid() == master_pid:
                time.sleep(_ORPHAN_POLL_SECONDS)
            os._exit(EXIT_ORPHANED)

        threading.Thread(target=watch, name="qoper8-orphan-watch", daemon=True).start()


class Channel:
    """Blocking frame I/O over the child's end of the socketpair."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self._reader = proto.FrameReader(limit)
        self._frames: deque[tuple[int, int, int, bytes]] = deque()
        # One receive buffer for the child's life: recv(n) would allocate n bytes per call,
        # and above 128 KiB that is an mmap, mremap and munmap per job.
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)

    @property
    def limit(self) -> int:
        return self._reader.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._reader.limit = value

    def read(self) -> tuple[int, int, bytes] | None:
        """The next (kind, job_id, payload), or None at a clean EOF (the master is gone)."""
        frames = self._frames
        while not frames:
            data = self._recv()
            if not data:
                if self._reader.pending:
                    raise proto.ProtocolError("channel closed inside a frame")
                return None
            frames.extend(self._reader.feed(data))
        kind, job_id, _extra, payload = frames.popleft()
        return kind, job_id, payload

    def _recv(self) -> bytes:
        received = self._sock.recv_into(self._buffer)
        return bytes(self._view[:received])

    def close(self) -> None:
        self._sock.close()

    def send(self, kind: Kind, job_id: int, payload: bytes, extra: int = 0) -> None:
        if len(payload) < 65536:
            self._sock.sendall(proto.frame(kind, job_id, payload, extra))
        else:  # no 20 MiB concatenation for a big result
            self._sock.sendall(proto.HEADER.pack(len(payload), kind, job_id, extra))
            self._sock.sendall(payload)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _unknown_type(action_type: object) -> ActionRefused:
    """The report of an action whose type no handler answers (the master checks this
    already once it knows the handlers; a child checks again, for the early jobs)."""
    message = f"no handler for action type {clip(repr(action_type), MAX_LOC_CHARS)}"
    entry: ErrorEntry = {"loc": ["type"], "msg": message, "type": "unknown_action_type"}
    return ActionRefused(message, [entry], 1)


class ChildLoop:
    """Runs jobs for the master, one at a time, until told to retire or the master goes."""

    def __init__(
        self,
        channel: Channel,
        worker: Worker,
        report_memory: bool,
        main: dict[str, str] | None = None,
    ) -> None:
        self.channel = channel
        self.worker = worker
        self.report_memory = report_memory
        # The master's main script, imported as __mp_main__ when a call first needs it.
        self._main = main
        self._loop: Any = None  # an asyncio loop, created only if a handler is async

    def run(self) -> int:
        channel = self.channel
        while True:
            message = channel.read()
            if message is None:
                self._stop()
                return EXIT_OK
            kind, job_id, payload = message
            if kind == _ACTION:
                self._run_action(job_id, payload)
            elif kind == _CALL:
                self._run_call(job_id, payload)
            elif kind == Kind.RETIRE:
                self._stop()
                return EXIT_OK
            else:
                raise proto.ProtocolError(f"unexpected frame kind {kind}")
            # Prints end up in the master line by line, with the job that made them.
            sys.stdout.flush()

    def _extra(self) -> int:
        return _rss_bytes() if self.report_memory else 0

    def _run_action(self, job_id: int, payload: bytes) -> None:
        send = self.channel.send
        try:
            action = proto.loads(payload)
            action_type = action.pop("type")
            handler = self.worker.get(action_type)
            if handler is None:
                raise _unknown_type(action_type)
            kwargs = handler.bind(action)
        except Exception as exc:
            send(Kind.ERROR, job_id, self._report(_INVALID, exc))
            return
        try:
            result = handler.func(**kwargs)
            if handler.is_async:
                result = self._run_coroutine(result)
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            send(Kind.ERROR, job_id, self._report(_FAILED, exc), self._extra())
            return
        try:
            body = proto.dumps(result)
        except TypeError as exc:
            self._fail(
                job_id, TypeError(f"the result of handler {action_type!r} is not JSON: {exc}")
            )
            return
        if body.find(b"null") >= 0 and (found := proto.find_non_finite(result)) is not None:
            path, number = found
            where = "it is" if not path else f"field {proto.format_path(path)} is"
            self._fail(
                job_id,
                ValueError(
                    f"the result of handler {action_type!r} is not JSON: {where} "
                    f"{proto.number_name(number)}, which JSON cannot carry"
                ),
            )
            return
        if len(body) > self.channel.limit:
            self._fail(
                job_id,
                ValueError(
                    f"the result of handler {action_type!r} is {len(body)} bytes, over the "
                    f"pool's max_message_bytes of {self.channel.limit}"
                ),
            )
            return
        send(_RESULT, job_id, body, self._extra())

    def _report(self, category: str, exc: BaseException) -> bytes:
        return error_report(category, exc, limit=self.channel.limit)

    def _fail(self, job_id: int, exc: BaseException) -> None:
        self.channel.send(Kind.ERROR, job_id, self._report(_FAILED, exc), self._extra())

    def _run_call(self, job_id: int, payload: bytes) -> None:
        try:
            if self._main is not None and b"__main__" in payload:
                main, self._main = self._main, None
                import_main(main)
            func, args, kwargs = pickle.loads(payload)
            result = func(*args, **kwargs)
            body = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            if len(body) > self.channel.limit:
                raise ValueError(f"the result is {len(body)} bytes, over max_message_bytes")
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt):
                raise
            self.channel.send(Kind.ERROR_PICKLE, job_id, self._pickled_report(exc), self._extra())
            return
        self.channel.send(Kind.RESULT_PICKLE, job_id, body, self._extra())

    def _pickled_report(self, exc: BaseException) -> bytes:
        """The ERROR_PICKLE payload: the JSON report's fields plus the exception itself
        when it round-trips, within the channel's limit like every report."""
        info: dict[str, Any] = proto.loads(self._report(_FAILED, exc))
        info["exception"] = None
        with contextlib.suppress(Exception):
            pickled = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(pickled)  # an exception that cannot round-trip stays text only
            info["exception"] = pickled
        body = pickle.dumps(info)
        if len(body) > self.channel.limit:  # the exception object itself is too big
            info["exception"] = None
            body = pickle.dumps(info)
        return body

    def _run_coroutine(self, coro: Any) -> Any:
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _stop(self) -> None:
        try:
            self.worker.run_stop_hooks()
        except Exception:
            traceback.print_exc()
        if self._loop is not None:
            self._loop.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    master_pid, channel_fd = int(args[0]), int(args[1])
    _die_with_master(master_pid)
    # The master decides when children stop; a terminal's Ctrl-C is for the master.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sock = socket.socket(fileno=channel_fd)
    channel = Channel(sock, limit=1 << 32)
    try:
        first = channel.read()
        if first is None or first[0] != Kind.CONFIG:
            raise proto.ProtocolError("expected CONFIG as the first frame")
        config = proto.loads(first[2])
        channel.limit = int(config["max_message_bytes"])
        # The master's import path, plus its working directory as uvicorn and gunicorn do,
        # so that "workers.users:worker" resolves from where the program was started.
        sys.path[:] = config["sys_path"]
        if config["cwd"] not in sys.path and "" not in sys.path:
            sys.path.append(config["cwd"])
    except (proto.ProtocolError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"qoper8 child: bad start-up message: {exc}\n")
        return EXIT_PROTOCOL_ERROR
    try:
        worker = load_worker(config["worker"])
        worker.prepare()
        worker.run_start_hooks()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            report = error_report(_FAILED, exc, limit=channel.limit)
            channel.send(Kind.START_FAILED, 0, report)
        return EXIT_START_FAILED
    ready = {
        "pid": os.getpid(),
        "protocol": proto.PROTOCOL_VERSION,
        "handlers": [
            {"type": h.type, "import_path": h.import_path, "params": list(h.params)}
            for h in worker.handlers.values()
        ],
    }
    channel.send(Kind.READY, 0, proto.dumps(ready))
    try:
        return ChildLoop(
            channel, worker, bool(config.get("report_memory")), config.get("main")
        ).run()
    except (proto.ProtocolError, proto.JSONDecodeError) as exc:
        sys.stderr.write(f"qoper8 child: protocol error, exiting: {exc}\n")
        return EXIT_PROTOCOL_ERROR
    except (BrokenPipeError, ConnectionResetError):
        return EXIT_OK  # the master is gone


if __name__ == "__main__":
    sys.exit(main())
