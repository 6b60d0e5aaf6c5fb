"""A child's start: load the worker module, run its start hooks, say READY, then hand over to
``ChildLoop`` (one job at a time). Also the child's blocking channel to the master, and the
guard that makes it die with its master.

Run as ``python -m qoper8._engine.child_main MASTER_PID CHANNEL_FD`` (``start_method="spawn"``),
or entered through ``serve()`` in a child the fork server just forked, with the worker module
already imported. It imports only the stdlib and the child's side of the engine (protocol,
worker, handler, child_api, reports; pydantic once a handler validates), never the pool, the
daemon or redis, so that a child starts fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from . import protocol as proto
from .child_loop import EXIT_OK, ChildLoop
from .protocol import Kind
from .reports import error_report
from .worker import load_worker

if TYPE_CHECKING:
    from .worker import Worker

# Exit codes the master interprets; a start failure is also reported as a frame.
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


@functools.cache
def _libc() -> Any:
    """The C library, loaded once: the fork server loads it, its children reuse it."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid: int) -> None:
    """Make sure this process cannot outlive its parent, even inside a blocking handler.

    The parent is the master (a spawned child, or the fork server) or the fork server (a
    forked child): master dies, the fork server dies, its children die. On Linux the kernel
    sends SIGKILL when the parent thread dies (PR_SET_PDEATHSIG); the master spawns from one
    long-lived thread for exactly that reason, and the fork server has only one thread.
    Elsewhere a daemon thread polls the parent pid. Either way, a parent that died before we
    got here means exit now.
    """
    armed = False
    if sys.platform == "linux":
        try:
            armed = _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
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


def main(argv: list[str] | None = None) -> int:
    """A spawned child: ``MASTER_PID CHANNEL_FD``."""
    args = sys.argv[1:] if argv is None else argv
    master_pid, channel_fd = int(args[0]), int(args[1])
    die_with_parent(master_pid)
    return serve(channel_fd)


def serve(channel_fd: int, preloaded: tuple[str, Worker] | None = None) -> int:
    """The child's life from its CONFIG frame on: start, READY, jobs. ``preloaded`` is the
    fork server's (reference, worker), imported before the fork: used when the master asks
    for that same worker module, so that only the start hooks run here."""
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
        if preloaded is not None and preloaded[0] == config["worker"]:
            worker = preloaded[1]
        else:
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
        "topics": worker.topics,
        "actors": {name: t.methods for name, t in worker.actors.items()},
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
