"""The operating system's side of a child, for ``Child``: its printed lines, noticing its
exit, and the error of a start that failed.

Kept apart from the handle's state machine and channel, which are the hot path; nothing here
runs per job.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from .child import Child

__all__ = ["ChildStartError", "ExitWatcher", "OutputLines", "start_process"]


def start_process(channel_fd: int) -> subprocess.Popen[bytes]:
    """Fork and exec a fresh interpreter running the child's main loop, with ``channel_fd``
    (its end of the socketpair) and its merged stdout and stderr as a pipe. Called on the
    pool's one spawner thread (see ``Child.spawn``)."""
    argv = [sys.executable, "-m", "qoper8._engine.child_main", str(os.getpid()), str(channel_fd)]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(channel_fd,),
        # Its own process group: a terminal's Ctrl-C is for the master, and a kill reaches
        # whatever the handler started too.
        start_new_session=True,
    )


class OutputLines(asyncio.Protocol):
    """Turns the child's merged stdout and stderr into whole lines."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._on_line(line.decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._partial:
            self._on_line(self._partial.decode(errors="replace"))
            self._partial = b""


class ExitWatcher:
    """Calls ``on_exit(wait status)`` once, on the loop, when process ``pid`` exits: through
    a pidfd the loop watches (Linux 5.3+: no thread, noticed at once), else from one thread
    blocked in ``waitpid``."""

    def __init__(
        self, pid: int, loop: asyncio.AbstractEventLoop, on_exit: Callable[[int], None]
    ) -> None:
        self._pid = pid
        self._loop = loop
        self._on_exit = on_exit
        self._pidfd: int | None = None
        pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(pid)
            except OSError:
                self._pidfd = None
        if self._pidfd is not None:
            loop.add_reader(self._pidfd, self._reap)
            return

        def wait() -> None:  # portable fallback: one waiting thread per child
            _, status = os.waitpid(pid, 0)
            loop.call_soon_threadsafe(on_exit, status)

        threading.Thread(target=wait, name=f"qoper8-reap-{pid}", daemon=True).start()

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self._pid, 0
        if pid == 0:
            return
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._on_exit(status)


class ChildStartError(Exception):
    """The child died or reported failure before READY (internal; the pool turns it into
    ``StartFailed``)."""

    def __init__(self, child: Child) -> None:
        self.child = child
        err = child.start_error or {}
        from .._error_base import describe_exit

        self.remote_type: str | None = err.get("type")
        self.remote_message: str | None = err.get("message")
        self.remote_traceback: str | None = err.get("traceback")
        how = describe_exit(child.exitcode, child.signal)
        if err:
            text = f"{err.get('type')}: {err.get('message')}"
        elif child.was_ready:
            after = time.monotonic() - child.ready_at
            text = f"it {how} {after:.1f}s after it was ready, before any job"
        else:
            text = f"it {how} before it was ready"
        super().__init__(f"{child.describe()} failed to start: {text}")
