"""The daemon's pidfile: written atomically at start, refused when it names a live process,
removed at exit only if it still names this one. ``qoper8 stop`` reads it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["pid_alive", "read_pid", "remove_pidfile", "write_pidfile"]


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or None if it is missing or holds no number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_pidfile(path: Path) -> int | None:
    """Write this process's pid to ``path`` (atomically: a reader never sees half a pid).

    Returns:
        None when written; the other pid, leaving the file alone, when ``path`` names
        another live process.
    """
    other = read_pid(path)
    if other is not None and other != os.getpid() and pid_alive(other):
        return other
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)
    return None


def remove_pidfile(path: Path) -> None:
    """Remove ``path`` if it still names this process (a successor may own it by now)."""
    if read_pid(path) == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(path)
