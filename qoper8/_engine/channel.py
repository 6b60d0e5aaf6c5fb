"""``ChildChannel``: the master's end of one child's socket, as part of ``Child``. It writes
frames without ever blocking (straight to the socket, or queued until it drains) and reads
what arrives, handing a job's reply to the dispatcher on the fast path (one whole frame per
read) and anything else to ``Child.on_frame``.

This is the master's hot path: one ``send`` and one ``recv`` per job, no allocation beyond
the reply's payload. Kept apart from the child's lifecycle so that each reads as one job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from . import protocol as proto
from .protocol import Kind

if TYPE_CHECKING:
    import asyncio
    import socket
    from collections import deque

    from .child import ChildEvents

__all__ = ["RECV_SIZE", "ChildChannel"]

# One recv per readiness event; a result larger than this arrives over several events.
RECV_SIZE: Final = 64 * 1024
# Frames 12-15 end a job (the hot path), 16 on are anything else; bound once as ints, since
# reading a member off an Enum class is slow in Python 3.11.
_FIRST_REPLY: Final = int(Kind.RESULT)
_FIRST_MESSAGE: Final = proto.FIRST_MESSAGE
_HEADER_SIZE: Final = proto.HEADER_SIZE
_HEADER_UNPACK: Final = proto.HEADER.unpack_from


class ChildChannel:
    """The socket half of ``Child`` (a base class, so the hot path pays no extra hop)."""

    events: ChildEvents
    last_rss: int
    _sock: socket.socket | None
    _reader: proto.FrameReader
    _unsent: deque[memoryview]
    _loop: asyncio.AbstractEventLoop | None
    _paused: bool
    _recv_buffer: bytearray
    _recv_view: memoryview

    def on_frame(self, kind: int, job_id: int, extra: int, payload: bytes) -> None:
        raise NotImplementedError

    def protocol_violation(self, why: str) -> None:
        raise NotImplementedError

    def on_channel_closed(self) -> None:
        raise NotImplementedError

    def _send(self, kind: Kind, job_id: int, payload: bytes) -> None:
        self.send_frame(proto.frame(kind, job_id, payload))

    def send_frame(self, data: bytes) -> None:
        """Write one frame without blocking: straight to the socket (the common case, one
        syscall), or queued behind what is still unsent."""
        sock = self._sock
        if sock is None:
            return  # the channel is gone; the exit watcher reports the death
        if self._unsent:
            self._unsent.append(memoryview(data))
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close_channel()
            return
        if sent < len(data):
            self._unsent.append(memoryview(data)[sent:])
            assert self._loop is not None
            self._loop.add_writer(sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        sock = self._sock
        unsent = self._unsent
        assert sock is not None
        assert self._loop is not None
        while unsent:
            chunk = unsent[0]
            try:
                sent = sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close_channel()
                return
            if sent < len(chunk):
                unsent[0] = chunk[sent:]
                return
            unsent.popleft()
        self._loop.remove_writer(sock.fileno())

    def _on_readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            received = sock.recv_into(self._recv_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            received = 0
        if not received:
            self._close_channel()
            self.on_channel_closed()
            return
        reader = self._reader
        if received >= _HEADER_SIZE and not reader.pending:
            # Fast path: exactly one reply in this read, the common case for small results.
            # Its header is read in place and its payload copied out once.
            length, kind, job_id, extra = _HEADER_UNPACK(self._recv_buffer)
            if (
                received == _HEADER_SIZE + length
                and _FIRST_REPLY <= kind < _FIRST_MESSAGE
                and length <= reader.limit
            ):
                if extra:
                    self.last_rss = extra
                self.events.child_frame(
                    self,  # type: ignore[arg-type]  # a Child: ChildChannel is its base
                    kind,
                    job_id,
                    extra,
                    bytes(self._recv_view[_HEADER_SIZE:received]),
                )
                return
        data = bytes(self._recv_view[:received])
        try:
            frames = self._reader.feed(data)
        except proto.ProtocolError as exc:
            self.protocol_violation(str(exc))
            return
        for kind, job_id, extra, payload in frames:
            self.on_frame(kind, job_id, extra, payload)

    def _close_channel(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        self._unsent.clear()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())
        sock.close()

    def pause_reading(self) -> None:
        """Stop reading the channel (a stream's reader is a window behind): the child blocks
        in its next send once the socket's buffer is full."""
        if self._sock is not None and not self._paused and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._paused = True

    def resume_reading(self) -> None:
        if self._sock is not None and self._paused and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._paused = False
