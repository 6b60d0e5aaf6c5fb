"""The daemon's listening sockets: bound here (``--host/--port``, ``--unix``), or inherited
ready-made (``--fd N``, systemd socket activation, or the old master during a USR2 upgrade).

The daemon always serves on socket objects it holds, whichever way they came, so that a
USR2 can hand the very same sockets to the new master: the kernel keeps one queue of
pending connections per socket, and while either master holds it no connection is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import MutableMapping, Sequence

__all__ = [
    "SD_LISTEN_FDS_START",
    "bind_tcp",
    "bind_unix",
    "inherit",
    "open_sockets",
    "is_public",
    "systemd_fds",
    "url_of",
]

# systemd passes its sockets from this descriptor on (sd_listen_fds(3)); the protocol's
# constant, not ours to change.
SD_LISTEN_FDS_START: Final = 3


def bind_tcp(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets for every address ``host`` resolves to, as
    asyncio's ``create_server`` binds them.

    Raises:
        OSError: the name does not resolve, or an address is taken.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                raise OSError(
                    err.errno,
                    f"error while attempting to bind on address {address!r}: "
                    f"{(err.strerror or str(err)).lower()}",
                ) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_unix(path: str) -> socket.socket:
    """A bound Unix socket at ``path``; a stale socket file there is replaced (a file that
    is not a socket is left alone, and the bind fails).

    Raises:
        OSError: the path cannot be bound.
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    return sock


def inherit(fds: Sequence[int]) -> list[socket.socket]:
    """Socket objects for listening sockets this process inherited as descriptors.

    Raises:
        OSError: a descriptor is not open, or is not a listening stream socket.
    """
    sockets = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise OSError(exc.errno, f"descriptor {fd} is not a socket: {exc.strerror}") from None
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if sock.type != socket.SOCK_STREAM or not listening:
            sock.detach()  # not ours to close
            raise OSError(f"descriptor {fd} is not a listening stream socket")
        sock.set_inheritable(False)  # children must not hold it (nor the new master's)
        sockets.append(sock)
    return sockets


def systemd_fds(environ: MutableMapping[str, str]) -> list[int]:
    """The descriptors systemd's socket activation passed to this process (none when
    ``LISTEN_PID`` names another); the variables are removed so that no child of ours
    takes them for its own (``sd_listen_fds(1)``)."""
    pid = environ.pop("LISTEN_PID", None)
    count = environ.pop("LISTEN_FDS", None)
    environ.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None or not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit():
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def url_of(sock: socket.socket) -> str:
    """``http://127.0.0.1:8765``, ``http://[::1]:8765`` or ``unix:/run/qoper8.sock``."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name}"
    host, port = name[0], name[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_public(sock: socket.socket) -> bool:
    """Whether callers off this machine may reach ``sock`` (not Unix, not loopback)."""
    if sock.family == socket.AF_UNIX:
        return False
    host = sock.getsockname()[0]
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def open_sockets(
    *,
    fds: Sequence[int] | None,
    unix: str | None,
    host: str,
    port: int,
    environ: MutableMapping[str, str],
) -> tuple[list[socket.socket], str | None, str]:
    """The daemon's sockets, from the first of: ``fds`` (``--fd``), systemd's socket
    activation, ``unix``, ``host:port``. Returns them, the socket file this master made
    (removed at stop; None when inherited or TCP), and where, for messages.

    Raises:
        OSError: a descriptor is not a listening socket, or an address cannot be bound.
    """
    inherited = list(fds or ()) or systemd_fds(environ)
    if inherited:
        where = "descriptor" + ("s " if len(inherited) > 1 else " ")
        where += ", ".join(map(str, inherited))
        try:
            return inherit(inherited), None, where
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc)) from None
    if unix is not None:
        return [bind_unix(unix)], unix, unix
    return bind_tcp(host, port), None, f"{host}:{port}"
