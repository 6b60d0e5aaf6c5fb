"""Fakes for the fast Redis tests: an in-memory pool the consumer feeds, the handler
allowlist it reports, and ``FakeWire``, the ``Wire`` interface over fakeredis (which has no
socket to pipeline on), so that the same Lua scripts run (see the ``server`` fixture)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import fakeredis
from redis.exceptions import NoScriptError

from qoper8._engine.worker import HandlerInfo
from qoper8.errors import JobFailed

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from qoper8._redis.wire import Script
    from qoper8._types import JSONValue

HANDLERS = {
    "add": HandlerInfo("add", "workers.math.add", ("a", "b")),
    "user.get": HandlerInfo("user.get", "workers.users.get_user", ("id",)),
}


class FakePool:
    """An in-memory pool with ``slots`` children that answers ``add`` inline; while
    ``gate`` is clear, jobs hold their slot."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = self.size = slots
        self.is_open = True
        self.handlers: Mapping[str, HandlerInfo] = HANDLERS
        self.gate = asyncio.Event()
        self.gate.set()
        self.submitted = 0
        self._changed = asyncio.Event()

    def has_capacity(self) -> bool:
        return self.slots > 0

    async def wait_capacity(self) -> None:
        while not self.has_capacity() and self.is_open:
            self._changed.clear()
            await self._changed.wait()

    def occupy(self, n: int = 1) -> None:
        """Take ``n`` slots, as submits from another transport (HTTP, local) would."""
        self.slots -= n

    def free(self, n: int = 1) -> None:
        self.slots += n
        self._changed.set()

    async def submit(
        self,
        action: Mapping[str, Any],
        *,
        timeout: float | None = None,
        kill_on_cancel: bool = False,
        on_progress: object = None,
    ) -> JSONValue:
        self.slots -= 1
        self.submitted += 1
        try:
            await self.gate.wait()
            if action["type"] != "add":
                raise JobFailed("x", remote_type="KeyError", remote_message="no")
            result: int = action["a"] + action["b"]
            return result
        finally:
            self.free()

    def stream(self, action: Mapping[str, Any], **options: Any) -> Any:
        raise AssertionError("no job of the fast tests asks for a stream")

    async def broadcast(self, topic: str, payload: Any = None, **options: Any) -> Any:
        raise AssertionError("the fast tests broadcast nothing")


class FakeWire:
    """What the consumer uses of a ``Wire``, over a fakeredis server: every command runs in
    a task of its own (the real Wire pipelines them on one connection)."""

    def __init__(self, server: fakeredis.FakeServer) -> None:
        self._redis: Any = fakeredis.FakeAsyncRedis(server=server)

    def command(self, *args: Any, block: float = 0.0) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.ensure_future(self._redis.execute_command(*args))
        return future

    def script(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        return asyncio.ensure_future(self._script(script, keys, args))

    async def _script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self._redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._redis.execute_command("EVAL", script.body, len(keys), *keys, *args)

    async def aclose(self) -> None:
        await self._redis.aclose()
