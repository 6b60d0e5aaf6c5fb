"""RESP2, the Redis wire format, for ``Wire``: packing commands, and reading replies with
hiredis (the redis extra installs it) or, without it, the small reader below.

Replies keep redis-py's raw shapes: bulk strings as bytes, integers as int, nil as None,
arrays as lists; an error reply becomes the ``redis.exceptions`` class redis-py would raise.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final, Protocol

from redis._parsers.base import BaseParser
from redis.exceptions import DataError, InvalidResponse, RedisError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["REPLY_ERRORS", "new_reader", "pack", "reply_error"]

# The pure-Python reader drops the bytes it has read once there are this many (or all were):
# lower copies the unread rest more often, higher keeps more read bytes in memory.
_COMPACT_AT: Final = 1 << 16


class Reader(Protocol):
    def feed(self, data: bytes) -> None: ...

    def gets(self) -> Any:
        """The next whole reply, or False while it is incomplete."""


def pack(args: Sequence[Any]) -> bytes:
    """One command as RESP: an array of bulk strings (str as UTF-8, float as its repr)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            b = arg
        elif isinstance(arg, str):
            b = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            b = b"%d" % arg
        elif isinstance(arg, float):
            b = repr(arg).encode()
        else:
            raise DataError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def reply_error(message: str) -> RedisError:
    """The exception redis-py raises for this error reply (NOSCRIPT, READONLY, OOM...)."""
    parser: Any = BaseParser  # untyped in redis-py
    exc: RedisError = parser.parse_error(message)
    return exc


class ReplyError(Exception):
    """An error reply, as the pure-Python reader returns it (hiredis has its own)."""


class _Incomplete(Exception):
    pass


class PyReader:
    """RESP2 replies out of a byte stream, for when hiredis is not installed."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def gets(self) -> Any:
        try:
            reply, pos = self._parse(self._pos)
        except _Incomplete:
            return False
        if pos >= _COMPACT_AT or pos == len(self._buf):
            del self._buf[:pos]
            pos = 0
        self._pos = pos
        return reply

    def _parse(self, pos: int) -> tuple[Any, int]:
        buf = self._buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        kind, line, pos = buf[pos], bytes(buf[pos + 1 : end]), end + 2
        if kind == 0x2B:  # + simple string
            return line, pos
        if kind == 0x2D:  # - error
            return ReplyError(line.decode("utf-8", "replace")), pos
        if kind == 0x3A:  # : integer
            return int(line), pos
        if kind == 0x24:  # $ bulk string
            n = int(line)
            if n < 0:
                return None, pos
            if len(buf) < pos + n + 2:
                raise _Incomplete
            return bytes(buf[pos : pos + n]), pos + n + 2
        if kind == 0x2A:  # * array
            n = int(line)
            if n < 0:
                return None, pos
            items = []
            for _ in range(n):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise InvalidResponse(f"Protocol error, got {chr(kind)!r} as reply type byte")


_hiredis: Any
try:
    _hiredis = importlib.import_module("hiredis")
except ImportError:  # the redis extra installs it
    _hiredis = None

REPLY_ERRORS: tuple[type[Exception], ...] = (
    (ReplyError,) if _hiredis is None else (ReplyError, _hiredis.ReplyError)
)


def new_reader() -> Reader:
    """hiredis's reader if installed (C, about 10x faster), else ``PyReader``."""
    if _hiredis is not None:
        reader: Reader = _hiredis.Reader()
        return reader
    return PyReader()
