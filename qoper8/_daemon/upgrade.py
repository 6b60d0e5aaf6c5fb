"""USR2: replace the running master with a new one (the installed ``qoper8``, re-executed
with the same arguments) without refusing a connection, unicorn's way.

::

    old master (USR2)                           new master
    PIDFILE -> PIDFILE.oldbin
    spawn python -m qoper8 ARGV  ─────────────▶ QOPER8_FD=<listening fds> (inherited)
      with a ready pipe                          QOPER8_UPGRADE=<the pipe's write end>
    serves on                                   writes PIDFILE, starts its children,
                                                 then accepts on the same sockets
    reads "ready" from the pipe  ◀───────────── writes its pid to the pipe
    stops accepting, closes its connections
    after their next answer, drains as on TERM,
    removes PIDFILE.oldbin, exits 0

Both masters accept on the same sockets for a while, so the kernel's queue of pending
connections always has a reader. If the new master exits before it is ready (its code does
not start, say), the pipe closes unread: the old master renames ``PIDFILE.oldbin`` back and
serves on. The new master is a child of the old one in the same process group; once the old
one exits, it is reparented (to init, or a subreaper such as systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING, BinaryIO, Final

from ..config import ENV_PREFIX
from .pidfile import pid_alive, read_pid

if TYPE_CHECKING:
    import socket
    from collections.abc import MutableMapping, Sequence
    from pathlib import Path

__all__ = ["FD_VARIABLE", "OLDBIN_SUFFIX", "UPGRADE_VARIABLE", "Upgrade", "notify_ready"]

logger = logging.getLogger("qoper8.daemon")

# The `fd` setting's variable: the new master serves on these inherited sockets.
FD_VARIABLE: Final = ENV_PREFIX + "FD"
# The descriptor of the pipe on which a new master tells the old one it is ready. Read and
# removed at start-up, so the new master's own children (and its own USR2) never see it.
UPGRADE_VARIABLE: Final = ENV_PREFIX + "UPGRADE"
# The old master's pidfile during a handover (unicorn's name).
OLDBIN_SUFFIX: Final = ".oldbin"


def take_ready_fd(environ: MutableMapping[str, str]) -> int | None:
    """The ready pipe of a master started by an upgrade (None otherwise), removed from the
    environment and kept from this master's children."""
    raw = environ.pop(UPGRADE_VARIABLE, None)
    if raw is None or not raw.isdigit():
        return None
    fd = int(raw)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return None  # not open: not started by an upgrade after all
    return fd


def notify_ready(fd: int) -> None:
    """Tell the old master that this one serves (it then hands over and drains)."""
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as exc:  # it is gone already (stopped meanwhile)
        logger.warning("could not tell the old master this one is ready: %s", exc.strerror)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


class Upgrade:
    """The old master's side of one daemon's upgrades.

    Args:
        argv: the arguments the daemon was started with (after ``qoper8``); None when it
            was not started by the command (embedded, tests): USR2 then does nothing.
        pidfile: the daemon's pidfile, if any.
    """

    def __init__(self, argv: Sequence[str] | None, pidfile: Path | None) -> None:
        self._argv = None if argv is None else list(argv)
        self._pidfile = pidfile
        self.pidfile = pidfile  # the pidfile this master owns now (oldbin during a handover)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_pipe: BinaryIO | None = None

    @property
    def in_progress(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def refusal(self) -> str | None:
        """Why an upgrade cannot start now, or None."""
        if self._argv is None:
            return "this daemon was not started by the qoper8 command"
        if self.in_progress:
            assert self._proc is not None
            return f"an upgrade is in progress (new master pid {self._proc.pid})"
        if self._pidfile is not None:
            older = read_pid(self._oldbin)
            if older is not None and older != os.getpid() and pid_alive(older):
                return f"an older master (pid {older}, in {self._oldbin}) is still draining"
        return None

    @property
    def _oldbin(self) -> Path:
        assert self._pidfile is not None
        return self._pidfile.with_name(self._pidfile.name + OLDBIN_SUFFIX)

    def spawn(self, sockets: Sequence[socket.socket]) -> None:
        """Start the new master on ``sockets`` (then ``wait_ready()``).

        Raises:
            OSError: the new master could not be started (the pidfile is put back).
        """
        assert self._argv is not None
        if self._pidfile is not None and read_pid(self._pidfile) == os.getpid():
            os.replace(self._pidfile, self._oldbin)
            self.pidfile = self._oldbin
        read_end, write_end = os.pipe()
        fds = [sock.fileno() for sock in sockets]
        env = {
            **os.environ,
            FD_VARIABLE: ",".join(map(str, fds)),
            UPGRADE_VARIABLE: str(write_end),
        }
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "qoper8", *self._argv],
                pass_fds=(*fds, write_end),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            os.close(read_end)
            self._restore_pidfile()
            raise
        finally:
            os.close(write_end)
        self._ready_pipe = os.fdopen(read_end, "rb", buffering=0)
        logger.info("USR2: started a new master, pid %d", self._proc.pid)

    async def wait_ready(self) -> bool:
        """Whether the new master says it is ready; False once it exited without saying
        so (the pidfile is then put back: this master serves on)."""
        proc, pipe = self._proc, self._ready_pipe
        assert proc is not None
        assert pipe is not None
        self._ready_pipe = None
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            line = await reader.readline()
        finally:
            transport.close()
        if line.strip() == str(proc.pid).encode():
            logger.info("the new master (pid %d) is ready: handing over to it", proc.pid)
            return True
        code = await asyncio.to_thread(proc.wait)
        self._restore_pidfile()
        logger.error(
            "upgrade failed: the new master (pid %d) exited with code %d before it was "
            "ready (see its log); this master serves on",
            proc.pid,
            code,
        )
        return False

    def _restore_pidfile(self) -> None:
        if self._pidfile is None or self.pidfile == self._pidfile:
            return
        other = read_pid(self._pidfile)
        if other is None or not pid_alive(other):
            with contextlib.suppress(OSError):
                os.replace(self._oldbin, self._pidfile)
                self.pidfile = self._pidfile
