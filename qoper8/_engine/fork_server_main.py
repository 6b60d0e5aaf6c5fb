"""The fork server: one fresh interpreter per generation of a pool that imports qoper8's child
side, pydantic and the worker module once, then forks each child on the master's request.
A forked child runs ``on_start`` itself (never here) and the usual loop (``child_main.serve``).

Run as ``python -m qoper8._engine.fork_server_main MASTER_PID CONTROL_FD``; the master's side is
``fork_server.ForkServer``. The control socket is a SOCK_SEQPACKET socketpair; each message is
one JSON object, with descriptors passed alongside (SCM_RIGHTS)::

    master → server   {"worker", "sys_path", "cwd"}                    once, first
    server → master   {"pid", "preloaded", "hazard"} or {"pid", "unsupported"}   the answer
    master → server   {"spawn": n}           + [channel fd, output fd]
    server → master   {"spawned": n, "pid"}  + [pidfd]   or {"spawned": n, "error"}
    server → master   {"exited": pid, "status": wait status}          as each child exits

Each child gets the master's descriptors (its channel, its own output pipe on stdout and
stderr), a session and process group of its own, and the parent-death signal: this process
is its parent, so when the fork server dies (and it dies with the master, the same way) its
children die too. The server reaps its children through pidfds and reports each exit at once.
On EOF it takes no more requests and exits once its last child has exited.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import stat
import sys
import threading
from typing import TYPE_CHECKING, Any, Final

from . import child_main
from .worker import load_worker

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["MAX_CONTROL_MESSAGE", "main"]

# The largest control message (the hello carries the master's sys.path). A larger one is cut
# short by SOCK_SEQPACKET and fails to decode: the master falls back to spawn.
MAX_CONTROL_MESSAGE: Final = 1 << 20
# Exit code of a fork server whose master sent nothing usable.
EXIT_PROTOCOL_ERROR: Final = 4


class _InChild(BaseException):
    """Raised in a child right after the fork: it unwinds the server's stack, so that the
    child's life runs from ``main()`` and ends as any interpreter does (atexit hooks, flushed
    streams, non-daemon threads joined), exactly as a spawned child's."""

    def __init__(self, channel_fd: int, output_fd: int) -> None:
        super().__init__()
        self.channel_fd = channel_fd
        self.output_fd = output_fd


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def _open_fds() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


def _hazard(fds_before: set[int]) -> str | None:
    """Why forking after the worker module's import is unsafe, or None: it started threads
    (a forked child gets their locks, not the threads), or it opened sockets (every child
    would share one connection)."""
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        return f"it started {len(threads)} thread(s) at import ({', '.join(sorted(threads))})"
    sockets = []
    for fd in sorted(_open_fds() - fds_before):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                sockets.append(fd)
        except OSError:
            continue  # the listing's own descriptor, closed since
    if sockets:
        return f"it opened {len(sockets)} socket(s) at import (connections children would share)"
    return None


def _preload(ref: str) -> tuple[tuple[str, Worker] | None, str | None]:
    """Import the worker module and build its validators: (reference, worker) or None if it
    failed (then each child imports it itself and reports its own error, as a spawned child
    does, and a respawn can succeed once whatever it needed is back); and the fork hazard."""
    before = _open_fds()
    try:
        import pydantic  # noqa: F401  (handlers validate with it: every child needs it)

        worker = load_worker(ref)
        worker.prepare()
        preloaded: tuple[str, Worker] | None = (ref, worker)
    except BaseException:
        preloaded = None
    return preloaded, _hazard(before)


class _Server:
    """The loop: fork on request, report exits."""

    def __init__(self, control: socket.socket, preloaded: tuple[str, Worker] | None) -> None:
        self.control = control
        self.preloaded = preloaded
        self.children: dict[int, int] = {}  # pidfd -> pid
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ)
        self.taking = True

    def run(self) -> int:
        while self.taking or self.children:
            for key, _ in self.selector.select():
                if key.fileobj is self.control:
                    self._request()
                else:
                    self._reap(key.fd)
        return 0

    def _request(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, MAX_CONTROL_MESSAGE, 2)
        except OSError:
            data, fds = b"", []
        if not data:  # the master closed: no more children; exit after the last one
            for fd in fds:
                os.close(fd)
            self.taking = False
            self.selector.unregister(self.control)
            self.control.close()
            return
        number = json.loads(data)["spawn"]
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self._tell({"spawned": number, "error": f"expected 2 descriptors, got {len(fds)}"})
            return
        error: OSError | None = None
        pid = pidfd = 0
        try:
            pid = self._fork(*fds)  # (a new child leaves here by _InChild, its fds open)
        except OSError as exc:
            error = exc
        for fd in fds:
            os.close(fd)
        if error is None:
            try:
                pidfd = os.pidfd_open(pid)  # before any waitpid: it names this very child
            except OSError as exc:  # out of descriptors: no child it cannot watch
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                error = exc
        if error is not None:
            self._tell({"spawned": number, "error": f"{type(error).__name__}: {error}"})
            return
        self.children[pidfd] = pid
        self.selector.register(pidfd, selectors.EVENT_READ)
        self._tell({"spawned": number, "pid": pid}, [pidfd])

    def _fork(self, channel_fd: int, output_fd: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            raise _InChild(channel_fd, output_fd)
        return pid

    def _reap(self, pidfd: int) -> None:
        pid = self.children[pidfd]
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = pid, 0
        if reaped == 0:
            return
        self.selector.unregister(pidfd)
        os.close(pidfd)
        del self.children[pidfd]
        self._tell({"exited": pid, "status": status})

    def _tell(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if not self.taking:
            return  # the master is gone or closed: nobody to tell
        with contextlib.suppress(OSError):  # the master closed meanwhile; EOF follows
            _send(self.control, message, fds)

    def leave(self, server_pid: int, child: _InChild) -> None:
        """In a child just forked: drop everything of the server's, become a child."""
        self.selector.close()
        if self.taking:
            self.control.close()
        for pidfd in self.children:
            os.close(pidfd)
        os.setsid()  # its own process group: a timeout kills whatever the handler started
        os.dup2(child.output_fd, 1)
        os.dup2(child.output_fd, 2)
        os.close(child.output_fd)
        child_main.die_with_parent(server_pid)
        # As a spawned child's: a handler may read its channel descriptor from here.
        sys.argv = [child_main.__file__, str(server_pid), str(child.channel_fd)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    master_pid, control_fd = int(args[0]), int(args[1])
    child_main.die_with_parent(master_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the master
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    control = socket.socket(fileno=control_fd)
    try:
        hello = json.loads(control.recv(MAX_CONTROL_MESSAGE))
        sys.path[:] = hello["sys_path"]  # as child_main does with its CONFIG
        if hello["cwd"] not in sys.path and "" not in sys.path:
            sys.path.append(hello["cwd"])
        ref = str(hello["worker"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        sys.stderr.write(f"qoper8 fork server: bad start-up message: {exc}\n")
        return EXIT_PROTOCOL_ERROR
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (OSError, AttributeError) as exc:  # Linux before 5.3: the master spawns instead
        _send(control, {"pid": os.getpid(), "unsupported": f"no pidfd_open: {exc}"})
        return 0
    preloaded, hazard = _preload(ref)
    # What is imported stays put: a child's collector never walks these objects, so it does
    # not write to (and copy) the pages it shares with the server and its siblings.
    gc.collect()
    gc.freeze()
    server_pid = os.getpid()
    _send(control, {"pid": server_pid, "preloaded": preloaded is not None, "hazard": hazard})
    if hazard is not None:
        return 0  # the master starts this generation's children by spawn
    server = _Server(control, preloaded)
    try:
        return server.run()
    except _InChild as forked:  # now in a new child, out of the server's loop
        server.leave(server_pid, forked)
        channel_fd = forked.channel_fd
    return child_main.serve(channel_fd, preloaded)


if __name__ == "__main__":
    sys.exit(main())
