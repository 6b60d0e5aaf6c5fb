"""``ForkServer``: the master's side of one fork server (``fork_server_main`` is the other):
start it, ask it for children, hear their exits, close it when its generation is done.

Why the fork server reports exits rather than the master watching pidfds: the master is no
longer a forked child's parent, so only the server can reap it and read its exit status
(``ChildDied`` carries the exit code or the signal). The server watches each child through a
pidfd and reports the status the moment the child exits: one message, no thread, no
polling. The pidfd it opened (before it could reap, so it names that very process) also comes
to the master, which needs it only when the server itself dies: its children then die too
(their parent-death signal), and the master waits on their pidfds to report each death.

Nothing here runs per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .child_process import ExitWatcher, OutputLines

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

__all__ = ["ForkServer", "ForkServerError", "fork_server_supported"]

# The largest control message the master reads (the server's answers are a few bytes).
MAX_REPLY: Final = 64 * 1024
# The wait status the master reports for a child that died with its fork server: killed by
# SIGKILL, which is what its parent-death signal is (its real status went with the server).
KILLED_WITH_SERVER: Final = signal.SIGKILL


class ForkServerError(Exception):
    """The fork server could not start, or cannot fork children here (internal: the pool
    starts that generation's children by spawn instead, and says why)."""


def fork_server_supported() -> bool:
    """Whether this platform can run a fork server: Linux, with ``os.pidfd_open``."""
    return sys.platform == "linux" and hasattr(os, "pidfd_open")


def _start(control_fd: int) -> subprocess.Popen[bytes]:
    """A fresh interpreter (never a fork of the master), on the spawner thread: the server's
    parent-death signal is tied to that thread, as a spawned child's is."""
    argv = [sys.executable, "-m", "qoper8._engine.fork_server_main", str(os.getpid())]
    return subprocess.Popen(
        [*argv, str(control_fd)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(control_fd,),
        start_new_session=True,
    )


class ForkServer:
    """One fork server, as the master sees it.

    Args:
        on_output: receives (server pid, line) for what the server prints (the worker
            module's output at import).
        on_lost: called once if the server dies while its generation still needs it.
    """

    def __init__(
        self,
        on_output: Callable[[int, str], None],
        on_lost: Callable[[ForkServer], None],
    ) -> None:
        self.pid = 0
        self.preloaded = False
        self.alive = False
        self.status: int | None = None  # the server's own wait status, once it exited
        self._on_output = on_output
        self._on_lost = on_lost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._output: asyncio.BaseTransport | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._spawns: deque[asyncio.Future[int]] = deque()
        self._requests = 0
        self._pidfds: dict[int, int] = {}  # pid -> pidfd, for each child alive
        self._watchers: dict[int, Callable[[int], None]] = {}
        self._early: dict[int, int] = {}  # exits reported before anyone watched
        self._closing = False
        self._exited = asyncio.Event()

    # ----------------------------------------------------------------- starting

    async def start(self, spawner: Executor, hello: dict[str, Any], timeout: float) -> None:
        """Start the server and wait until it imported the worker module.

        Raises:
            ForkServerError: it cannot fork children here, or found the worker module
                unsafe to fork (the message says why).
            OSError, TimeoutError: it could not start, or did not answer within ``timeout``.
        """
        loop = self._loop = asyncio.get_running_loop()
        master_sock, server_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            starting = loop.run_in_executor(spawner, _start, server_sock.fileno())
            try:
                proc = await asyncio.shield(starting)
            except asyncio.CancelledError:
                # The fork/exec goes on in its thread regardless: adopt and kill it.
                self._adopt(loop, await starting, master_sock)
                self.kill()
                raise
        except BaseException:
            if self._proc is None:
                master_sock.close()
            raise
        finally:
            server_sock.close()
        self._adopt(loop, proc, master_sock)
        try:
            assert proc.stdout is not None
            pid, on_output = self.pid, self._on_output
            self._output, _ = await loop.connect_read_pipe(
                lambda: OutputLines(lambda line: on_output(pid, line)), proc.stdout
            )
            self._hello = loop.create_future()
            self._send(hello)
            async with asyncio.timeout(timeout):
                answer = await asyncio.shield(self._hello)
        except BaseException:
            self.kill()
            raise
        if answer.get("unsupported"):
            raise ForkServerError(f"the fork server cannot run here: {answer['unsupported']}")
        if answer.get("hazard"):
            raise ForkServerError(f"not fork-safe: {answer['hazard']}")
        self.preloaded = bool(answer.get("preloaded"))
        self.alive = True

    def _adopt(
        self, loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes], sock: socket.socket
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        ExitWatcher(self.pid, loop, self._reaped)
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._readable)

    # ----------------------------------------------------------------- children

    def spawn(self, channel_fd: int, output_fd: int) -> asyncio.Future[int]:
        """Ask for a child with these descriptors (its channel; its stdout and stderr), sent
        before this returns; the future is its pid. Watch it with ``watch`` at once.

        Raises:
            OSError: the server is not running (the future: it could not fork, or died).
        """
        if not self.alive or self._loop is None:
            raise OSError("the fork server is not running")
        self._requests += 1
        self._send({"spawn": self._requests}, [channel_fd, output_fd])
        future: asyncio.Future[int] = self._loop.create_future()
        self._spawns.append(future)
        return future

    def watch(self, pid: int, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(wait status)`` once, on the loop, when child ``pid`` exits."""
        status = self._early.pop(pid, None)
        if status is None:
            self._watchers[pid] = on_exit
        else:
            assert self._loop is not None
            self._loop.call_soon(on_exit, status)

    @property
    def children(self) -> int:
        """How many of its children are alive."""
        return len(self._pidfds)

    # ----------------------------------------------------------------- closing

    def close_when_idle(self) -> None:
        """No more children from it: it exits once its last child has exited."""
        self._closing = True
        self.alive = False
        if not self._pidfds:
            self._close_socket()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    async def wait_exited(self) -> None:
        await self._exited.wait()

    def kill(self) -> None:
        """SIGKILL the server; its children die with it (and are reported)."""
        self.alive = False
        self._closing = True
        if self.pid and not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    # ----------------------------------------------------------------- events

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if self._sock is None:
            raise OSError("the fork server is gone")
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self._sock, [data], fds)
        else:
            self._sock.send(data)

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_REPLY, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._lost()
                return
            self._message(json.loads(data), fds)
            sock = self._sock

    def _message(self, message: dict[str, Any], fds: list[int]) -> None:
        if "exited" in message:
            self._child_exited(int(message["exited"]), int(message["status"]))
        elif "spawned" in message:
            future = self._spawns.popleft()
            if "error" in message:
                future.set_exception(OSError(f"the fork server could not fork: {message['error']}"))
                return
            pid = int(message["pid"])
            self._pidfds[pid] = fds[0]
            future.set_result(pid)
        elif self._hello is not None and not self._hello.done():
            self._hello.set_result(message)

    def _child_exited(self, pid: int, status: int) -> None:
        pidfd = self._pidfds.pop(pid, None)
        if pidfd is not None:
            assert self._loop is not None
            self._loop.remove_reader(pidfd)  # only watched once the server died
            os.close(pidfd)
        on_exit = self._watchers.pop(pid, None)
        if on_exit is None:
            self._early[pid] = status
        else:
            on_exit(status)
        if self._closing and not self._pidfds:
            self._close_socket()

    def _lost(self) -> None:
        """The server is gone (its socket closed, or it exited): spawns waiting fail; its
        children die with it (parent-death signal; killed here too, with their process
        groups) and are reported as their pidfds say they are gone."""
        if self._sock is None:
            return
        serving = self.alive  # not closing, not killed: its generation still needs it
        self._close_socket()
        self.alive = False
        while self._spawns:
            self._spawns.popleft().set_exception(OSError("the fork server died"))
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(ForkServerError("the fork server exited at start"))
            self._hello.exception()
        assert self._loop is not None
        for pid, pidfd in self._pidfds.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            self._loop.add_reader(pidfd, self._child_exited, pid, KILLED_WITH_SERVER)
        if serving:
            self._on_lost(self)

    def _close_socket(self) -> None:
        if self._sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _reaped(self, status: int) -> None:
        self.status = status
        if self._proc is not None:
            self._proc.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set()
        if self._output is not None:
            self._output.close()
        elif self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._lost()

    def describe(self) -> str:
        return f"the fork server (pid {self.pid})"
