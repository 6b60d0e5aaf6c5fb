"""Master-side handle on one child: spawn, wait_ready, run one job, retire, kill, reap.

One job per child is a state machine: STARTING → IDLE → BUSY → IDLE … → RETIRING → DEAD (or
DEAD from any state). ``run()`` on a child that is not IDLE is a bug and raises at once. The
handle never decides policy (when to retire, whom to kill): it reports events to the pool
through ``ChildEvents``, and the pool decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import socket
import time
from collections import deque
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

from . import protocol as proto
from .channel import RECV_SIZE, ChildChannel
from .child_process import ChildStartError, ExitWatcher, OutputLines, start_process
from .protocol import Kind

if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import Executor

    from .actors import Actor
    from .delivery import Delivery
    from .fork_server import ForkServer
    from .job import Job

# A child whose channel closed but whose process lingers is killed after this long.
LINGER_AFTER_EOF: Final = 2.0
# The smallest frame limit the master reads with, whatever max_message_bytes says: a READY
# listing many handlers must pass (results are bounded by the child itself).
CONTROL_FRAME_LIMIT: Final = 1 << 20
# A CONFIG frame up to this size is written before the child exists (well under any socket
# buffer: larger would block the loop until the child reads it).
CONFIG_IN_ADVANCE: Final = 64 * 1024


# Frames 12-15 end a job, 16 on are anything else (bound once: Enum reads are slow in 3.11).
_FIRST_REPLY: Final = int(Kind.RESULT)
_FIRST_MESSAGE: Final = proto.FIRST_MESSAGE


class ChildState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"
    DEAD = "dead"


class ChildEvents(Protocol):
    """What a child reports to its pool. Called on the event loop thread."""

    def child_ready(self, child: Child) -> None: ...
    def child_frame(
        self, child: Child, kind: int, job_id: int, extra: int, payload: bytes
    ) -> None: ...
    def child_message(self, child: Child, kind: int, ident: int, payload: bytes) -> None: ...
    def child_exited(self, child: Child) -> None: ...
    def child_proved(self, child: Child) -> None: ...
    def retire_if_due(self, child: Child) -> bool: ...
    def child_output(self, child: Child, line: str) -> None: ...


class Child(ChildChannel):
    """One child process, as the master sees it."""

    def __init__(
        self,
        events: ChildEvents,
        child_id: int,
        generation: int,
        *,
        max_jobs: int | None,
    ) -> None:
        self.events = events
        self.id = child_id
        self.generation = generation
        self.max_jobs = max_jobs
        self.state = ChildState.STARTING
        self.pid: int | None = None
        self.job: Job | None = None
        self.jobs_done = 0
        self.started_at = time.monotonic()
        self.retire_requested = False
        self.replace_reason: str | None = None  # its handler asked (REPLACE_ME): why
        # Ask the supervisor's retire policy when it becomes free (recycling limits, surplus,
        # an old generation): one attribute read per job instead of four checks.
        self.watch_retire = False
        # Started during an outage: its first job (or a moment alive) ends the outage.
        self.probation = False
        self.was_ready = False
        self.ready_at = 0.0  # monotonic time of READY (0.0 before it)
        self.retiring = False
        # start()/reload() await it themselves: its failure is theirs, not a respawn's.
        self.managed_start = False
        self.exitcode: int | None = None
        self.signal: int | None = None
        self.start_error: dict[str, Any] | None = None
        self.handlers: list[dict[str, Any]] = []
        self.topics: frozenset[str] = frozenset()  # its on_message topics, from READY
        self.actor_types: dict[str, list[str]] = {}  # its actor types and their methods
        # Messages for it between jobs (broadcasts, asks), and the one it handles now.
        self.inbox: deque[Delivery] = deque()
        self.delivery: Delivery | None = None
        # An actor child's actors by name, and its own queue of their calls (None for a
        # child that serves ordinary actions).
        self.actors: dict[str, Actor] = {}
        self.pinned: deque[Job] | None = None
        self.last_rss = 0
        self.kill_reason: str | None = None
        # Killed for its own fault (a start timeout, a protocol violation), not the pool's
        # decision (surplus, an old generation, closing): still a failed start.
        self.kill_fault = False
        self._proc: subprocess.Popen[bytes] | None = None  # a spawned child's only
        self._stdout: IO[bytes] | None = None  # its merged stdout and stderr
        self._sock: socket.socket | None = None
        self._reader = proto.FrameReader(0)
        # Unsent parts of frames, waiting for the socket to drain (large actions only).
        self._unsent: deque[memoryview] = deque()
        self._output: asyncio.BaseTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._exited = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None
        self._paused = False

    # ----------------------------------------------------------------- lifecycle

    async def spawn(
        self,
        spawner: Executor,
        config: dict[str, Any],
        limit: int,
        fork_server: ForkServer | None = None,
    ) -> None:
        """Start the process and connect to it. Returns before READY (see ``wait_ready``).

        With ``fork_server``, the server forks it (its worker module already imported; the
        request is one message, sent from the loop). Otherwise the fork/exec runs on
        ``spawner``, one long-lived thread: never on the loop thread, and always the same
        thread, because Linux's parent-death signal fires when the *thread* that spawned a
        child exits.
        """
        loop = self._loop = asyncio.get_running_loop()
        if self._ready is None:  # wait_ready() may have made it (a fork server was awaited)
            self._ready = loop.create_future()
        master_sock, child_sock = socket.socketpair()
        # CONFIG waits in the socket for the child, which reads it as soon as it runs: no
        # round trip through the loop between its start and its READY. (Only when it surely
        # fits the socket's buffer: nobody reads it yet.)
        hello = proto.frame(Kind.CONFIG, 0, proto.dumps(config))
        early = len(hello) <= CONFIG_IN_ADVANCE
        if early:
            master_sock.sendall(hello)
        try:
            if fork_server is None:
                stdout = await self._start_process(loop, spawner, child_sock, master_sock)
            else:
                stdout = await self._fork(loop, fork_server, child_sock, master_sock)
        except BaseException:
            master_sock.close()
            if self.pid is None:
                self.abandon()
            raise
        finally:
            child_sock.close()
        master_sock.setblocking(False)
        self._sock = master_sock
        self._reader = proto.FrameReader(max(limit, CONTROL_FRAME_LIMIT))
        # Reused for every read: recv(n) would allocate n bytes per call, and above 128 KiB
        # that is an mmap, mremap and munmap per job.
        self._recv_buffer = bytearray(RECV_SIZE)
        self._recv_view = memoryview(self._recv_buffer)
        loop.add_reader(master_sock.fileno(), self._on_readable)
        self._stdout = stdout
        self._output, _ = await loop.connect_read_pipe(
            lambda: OutputLines(self._output_line), stdout
        )
        if not early:
            self.send_frame(hello)

    async def _start_process(
        self,
        loop: asyncio.AbstractEventLoop,
        spawner: Executor,
        child_sock: socket.socket,
        master_sock: socket.socket,
    ) -> IO[bytes]:
        spawning = loop.run_in_executor(spawner, start_process, child_sock.fileno())
        try:
            self._proc = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # The fork/exec goes on in its thread regardless: adopt the process so that it
            # is killed and reaped like any other, never leaked.
            self._proc = await spawning
            self._stdout = self._proc.stdout
            self.pid = self._proc.pid
            ExitWatcher(self.pid, loop, self._record_exit)
            self.kill("start cancelled")
            raise
        self.pid = self._proc.pid
        ExitWatcher(self.pid, loop, self._record_exit)
        assert self._proc.stdout is not None
        return self._proc.stdout

    async def _fork(
        self,
        loop: asyncio.AbstractEventLoop,
        fork_server: ForkServer,
        child_sock: socket.socket,
        master_sock: socket.socket,
    ) -> IO[bytes]:
        read_fd, write_fd = os.pipe()
        stdout = os.fdopen(read_fd, "rb", buffering=0)  # closed at its exit
        try:
            forking = fork_server.spawn(child_sock.fileno(), write_fd)
        except BaseException:
            stdout.close()
            raise
        finally:
            os.close(write_fd)  # sent already (or never): the child gets its own copy
        try:
            self.pid = await asyncio.shield(forking)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                self.pid = await forking
            if self.pid is not None:
                self._stdout = stdout
                fork_server.watch(self.pid, self._record_exit)
                self.kill("start cancelled")
            else:
                stdout.close()
            raise
        except BaseException:
            stdout.close()
            raise
        fork_server.watch(self.pid, self._record_exit)
        return stdout

    def abandon(self) -> None:
        """The process was never started (spawn failed or was cancelled first): report the
        child gone so that nobody waits for it."""
        if self.state is ChildState.DEAD:
            return
        self.state = ChildState.DEAD
        self._exited.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ChildStartError(self))
            self._ready.exception()
        self.events.child_exited(self)

    def _record_exit(self, status: int) -> None:
        if os.WIFSIGNALED(status):
            self.signal = os.WTERMSIG(status)
        else:
            self.exitcode = os.waitstatus_to_exitcode(status)
        if self._proc is not None:
            self._proc.returncode = self.exitcode if self.signal is None else -self.signal
        if self._linger is not None:
            self._linger.cancel()
        self.state = ChildState.DEAD
        self._close_channel()
        if self._output is not None:
            self._output.close()
        elif self._stdout is not None:
            self._stdout.close()
        self._exited.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ChildStartError(self))
            # Nobody may be waiting any more (a sibling failed first); wait_ready() still
            # raises it when awaited, but asyncio must not log it as never retrieved.
            self._ready.exception()
        self.events.child_exited(self)

    async def wait_ready(self, timeout: float) -> None:
        """Wait for READY. Raises ``ChildStartError`` if the child fails or dies first, or
        ``TimeoutError`` (after killing it) if it takes longer than ``timeout``."""
        if self._ready is None:  # not spawned yet: its supervisor awaits a fork server first
            self._ready = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._ready)
        except TimeoutError:
            self.kill("start timed out", fault=True)
            raise

    async def wait_exited(self) -> None:
        await self._exited.wait()

    @property
    def is_alive(self) -> bool:
        return self.state is not ChildState.DEAD

    # ----------------------------------------------------------------- jobs

    def retire(self) -> None:
        """Ask the child to run its stop hooks and exit when it is idle."""
        if self.state is ChildState.DEAD:
            return
        self.state = ChildState.RETIRING
        self.retiring = True
        self._send(Kind.RETIRE, 0, b"")

    def kill(self, reason: str, *, fault: bool = False) -> None:
        """SIGKILL the child's whole process group; the exit watcher reports the death.
        ``fault``: the child brought it on itself (see ``kill_fault``)."""
        if self.state is ChildState.DEAD or self.pid is None:
            return
        if self.kill_reason is None:
            self.kill_reason = reason
            self.kill_fault = fault
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)

    # ----------------------------------------------------------------- events

    def on_frame(self, kind: int, job_id: int, extra: int, payload: bytes) -> None:
        if kind >= _FIRST_MESSAGE:
            self.events.child_message(self, kind, job_id, payload)
        elif kind >= _FIRST_REPLY:
            if extra:
                self.last_rss = extra
            self.events.child_frame(self, kind, job_id, extra, payload)
        elif kind == Kind.READY and self.state is ChildState.STARTING:
            try:
                info = proto.loads(payload)
                self.handlers = list(info["handlers"])
                self.topics = frozenset(info.get("topics") or ())
                self.actor_types = dict(info.get("actors") or {})
                if info.get("protocol") != proto.PROTOCOL_VERSION:
                    raise ValueError(f"protocol {info.get('protocol')}")
            except (ValueError, KeyError, TypeError) as exc:
                self.protocol_violation(f"bad READY: {exc}")
                return
            self.state = ChildState.IDLE
            self.was_ready = True
            self.ready_at = time.monotonic()
            assert self._ready is not None
            if not self._ready.done():
                self._ready.set_result(None)
            self.events.child_ready(self)
        elif kind == Kind.START_FAILED and self.state is ChildState.STARTING:
            with contextlib.suppress(ValueError):
                self.start_error = proto.loads(payload)
        else:
            self.protocol_violation(f"unexpected frame kind {kind}")

    def protocol_violation(self, why: str) -> None:
        self.kill(f"protocol violation: {why}", fault=True)

    def on_channel_closed(self) -> None:
        if self.state is not ChildState.DEAD and self._loop is not None:
            self._linger = self._loop.call_later(LINGER_AFTER_EOF, self.kill, "channel closed")

    def describe(self) -> str:
        return f"child {self.id} (pid {self.pid})"

    def _output_line(self, line: str) -> None:
        self.events.child_output(self, line)
