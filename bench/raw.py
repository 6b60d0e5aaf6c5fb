"""Scenario 9, the raw limit: a bare asyncio master pinging child processes over socketpairs,
8 bytes each way, no encoding, no framing beyond a fixed size, one message in flight per child
(the same one-job-per-child shape as qoper8). Nothing a pool does can be faster than this on
the same machine, so qoper8's numbers can be read as a fraction of it.

The same master also runs scenarios 3 and 4 (``call("sleep", ms)``: the 8 bytes carry the
milliseconds, the child sleeps them, then echoes; calls wait in a FIFO for an idle child). Its
efficiency and loop lag are the floor that the machine, ``time.sleep`` and asyncio's own
selector set for every pool: asyncio's epoll selector rounds its timeout up to whole
milliseconds, so a loop woken by I/O shortly before a timer is due sleeps up to 1 ms past it.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import subprocess
import sys
import time
from typing import Any

MSG = struct.pack("<d", 0.0)

# The child: read 8 bytes (milliseconds to sleep, a double), sleep that long if any, send them
# back, until EOF. Blocking, like a pool child.
CHILD_CODE = """
import socket, struct, sys, time
s = socket.socket(fileno=int(sys.argv[1]))
buf = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    buf += d
    while len(buf) >= 8:
        ms = struct.unpack_from("<d", buf)[0]
        if ms > 0:
            time.sleep(ms / 1000.0)
        s.sendall(buf[:8])
        buf = buf[8:]
"""


class _Echo(asyncio.Protocol):
    def __init__(self, master: RawPingPong) -> None:
        self.master = master
        self.pending = 0
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None  # the call() this child is running

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        while self.pending >= len(MSG):
            self.pending -= len(MSG)
            self.master.on_reply(self)


class RawPingPong:
    """A driver-like object for scenarios 1 and 2 only."""

    name = "raw asyncio socketpair ping"
    how = "bare asyncio master, 8-byte ping per child, no encoding"
    sync_how = None
    variant = True
    lazy = False

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.chans: list[_Echo] = []
        self._target = 0
        self._sent = 0
        self._done = 0
        self._finished: asyncio.Future[None] | None = None
        self._reply: asyncio.Future[None] | None = None
        self._idle: collections.deque[_Echo] = collections.deque()
        self._calls: collections.deque[tuple[bytes, asyncio.Future[None]]] = collections.deque()

    async def start(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            parent, child = socket.socketpair()
            proc = subprocess.Popen(  # noqa: ASYNC220 (a fork+exec, as qoper8's spawner does)
                [sys.executable, "-c", CHILD_CODE, str(child.fileno())], pass_fds=(child.fileno(),)
            )
            child.close()
            self.procs.append(proc)
            _, chan = await loop.create_unix_connection(lambda: _Echo(self), sock=parent)
            self.chans.append(chan)
        self._idle.extend(self.chans)
        await self.run_latency_sample(10)

    def call(self, op: str, arg: float = 0.0) -> asyncio.Future[None]:
        """Scenario 3's action (``op`` is ``"sleep"``): sent to an idle child, or queued."""
        assert op == "sleep", op
        fut = asyncio.get_running_loop().create_future()
        msg = struct.pack("<d", arg)
        if self._idle and not self._calls:
            self._dispatch(self._idle.popleft(), msg, fut)
        else:
            self._calls.append((msg, fut))
        return fut

    def _dispatch(self, chan: _Echo, msg: bytes, fut: asyncio.Future[None]) -> None:
        chan.waiter = fut
        assert chan.transport is not None
        chan.transport.write(msg)

    def on_reply(self, chan: _Echo) -> None:
        if chan.waiter is not None:
            fut, chan.waiter = chan.waiter, None
            fut.set_result(None)
            if self._calls:
                self._dispatch(chan, *self._calls.popleft())
            else:
                self._idle.append(chan)
            return
        if self._reply is not None:
            fut, self._reply = self._reply, None
            fut.set_result(None)
            return
        self._done += 1
        if self._sent < self._target:
            self._sent += 1
            assert chan.transport is not None
            chan.transport.write(MSG)
        elif self._done == self._target and self._finished is not None:
            self._finished.set_result(None)

    async def run_throughput(self, n: int) -> float:
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._target, self._done = n, 0
        t0 = time.perf_counter()
        self._sent = min(n, len(self.chans))
        for chan in self.chans[: self._sent]:
            assert chan.transport is not None
            chan.transport.write(MSG)
        await self._finished
        return time.perf_counter() - t0

    async def run_latency_sample(self, n: int) -> list[float]:
        loop = asyncio.get_running_loop()
        transport = self.chans[0].transport
        assert transport is not None
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self._reply = loop.create_future()
            transport.write(MSG)
            await self._reply
            out.append(time.perf_counter() - t0)
        return out

    def live_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    async def close(self) -> None:
        for chan in self.chans:
            if chan.transport is not None:
                chan.transport.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
            except TimeoutError:
                proc.kill()
        self.chans.clear()
        self.procs.clear()
