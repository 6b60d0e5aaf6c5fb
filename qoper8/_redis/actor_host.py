"""``ActorHosting``: a Redis host's side of named actors (``qoper8 serve --redis``; the
``RedisConsumer`` runs it beside its jobs when the pool's worker module declares actors).

A host with a free actor slot (its pool's ``max_actors``) claims actors that wait for a host
(new ones, ones handed back) or whose holder's lease lapsed (it died), and starts each on its
local pool, from the snapshot stored in Redis when there is one. It renews the leases of the
actors it holds with its heartbeat (every ``lease / 6``; a lease lasts ``2/3 x lease``), so a
dead host's actors start elsewhere within about ``5/6 x lease``. Hints wake it at once: a new
actor (``qoper8:actor-placing:{q}``), a call for an idle actor it holds (its wake list).
Calls are served by ``actor_serving``; keys and scripts are in ``actor_scripts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import orjson

from ..errors import ActorExists, ActorUnavailable, JobError, Qoper8Error
from .actor_scripts import CALLS_PREFIX, RECORD_PREFIX, STARTING_PREFIX
from .actor_serving import _Held, _Serving
from .connection import BLOCK_SECONDS, _Backoff, is_redis_failure
from .consumer_base import HEARTBEAT_FRACTION, LEASE_WINDOW_FRACTION
from .jobs import _text

__all__ = ["ActorHosting"]

logger = logging.getLogger("qoper8.redis")

# A stop that was cancelled (a fast stop) hands its actors back within this long at most.
ABANDON_TIMEOUT: Final = 2.0


class ActorHosting(_Serving):
    """Claims, starts, serves and hands back this host's actors (see the module)."""

    async def run(self) -> None:
        """Host actors until ``stop()``; returns at once if the pool has no actors."""
        if not self.local.supported:
            return
        # No actor type yet: a worker module without actors (no connection is opened for
        # it), or no child has started yet (an autoscaled pool at zero). Nothing notifies.
        while not self.local.types():  # noqa: ASYNC110
            await asyncio.sleep(self.lease * HEARTBEAT_FRACTION)
        self._wire = self._wire_factory(self.url)
        self._blocking = self._wire_factory(self.url)
        self._loops = [
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._wake_loop()),
        ]
        for loop in self._loops:
            loop.add_done_callback(self._failed)
        try:
            await self._done.wait()
        except asyncio.CancelledError:
            await self._abandon()
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running calls finish for up to ``grace`` seconds, then hand
        every actor back (another host starts it from its snapshot; its queued calls wait,
        a call still running fails with ActorDied) and stop the local ones."""
        if self._stopping or self._wire is None:
            self._stopping = True
            return
        self._stopping = True
        await self._stop_loops()
        busy = [h.serving for h in self._held.values() if h.serving and not h.serving.done()]
        if busy:
            await asyncio.wait(busy, timeout=self.grace if grace is None else max(0.0, grace))
        await self._hand_back_all()
        self._done.set()

    async def _abandon(self) -> None:
        self._stopping = True
        if self._wire is None:
            return
        await self._stop_loops()
        try:
            async with asyncio.timeout(ABANDON_TIMEOUT):
                await self._hand_back_all()
        except TimeoutError:
            logger.error(
                "consumer %s: could not hand its actors back; their leases lapse and other "
                "hosts restart them",
                self.name,
            )

    async def _stop_loops(self) -> None:
        for task in self._loops:
            task.cancel()
        if self._blocking is not None:
            await self._blocking.aclose()
        if self._loops:
            await asyncio.wait(self._loops)

    async def _hand_back_all(self) -> None:
        died = orjson.dumps(
            {
                "type": "ActorDied",
                "message": "the host running this call stopped before it ended; the actor "
                "moves to another host",
                "will_restart": True,
            }
        )
        for held in list(self._held.values()):
            for task in held.tasks:
                task.cancel()
            keys = [self._key(RECORD_PREFIX, held.name), self._registry, self._placing]
            with contextlib.suppress(Exception):
                await self._script("release", keys, [held.holder, held.name, died])
            await self._lose(held, "this host stops; handed back")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=ABANDON_TIMEOUT)
        if self._wire is not None:
            await self._wire.aclose()

    # ------------------------------------------------------------ heartbeat
    async def _heartbeat_loop(self) -> None:
        backoff = _Backoff(f"consumer {self.name} actors", self.url, self._health)
        interval = self.lease * HEARTBEAT_FRACTION
        while True:
            ok, _ = await backoff.attempt(self._beat)
            if ok:
                await asyncio.sleep(interval)

    async def _beat(self) -> None:
        """Renew the held actors' leases (learning which left us, which have calls waiting
        and which running calls their callers cancelled), then claim what waits."""
        if self._held:
            pairs: list[Any] = []
            for held in self._held.values():
                pairs += (held.name, held.holder)
            lost, ready, cancels = await self._script(
                "renew",
                [self._registry],
                [
                    time.time() + self._window,
                    RECORD_PREFIX + self.queue + ":",
                    CALLS_PREFIX + self.queue + ":",
                    *pairs,
                ],
            )
            for name in map(_text, lost):
                left = self._held.get(name)
                if left is not None:
                    if left.busy:
                        left.gone = True  # its call's finish hears it too
                    else:
                        await self._lose(left, "it was destroyed, or moved to another host")
            for name in map(_text, ready):
                self._woken(name)
            for name, ident in zip(cancels[::2], cancels[1::2], strict=True):
                mine = self._held.get(_text(name))
                if mine is not None and mine.running == _text(ident) and mine.call is not None:
                    mine.call.cancel()  # kill_on_cancel: the local pool kills its child
        await self._claim()

    @property
    def _window(self) -> float:
        return self.lease * LEASE_WINDOW_FRACTION

    # ------------------------------------------------------------ hints
    async def _wake_loop(self) -> None:
        backoff = _Backoff(f"consumer {self.name} actor hints", self.url, self._health)
        assert self._blocking is not None
        while not self._stopping:
            free = self._free() > 0 and bool(self.local.types())
            keys = [self._wake_key, self._placing] if free else [self._wake_key]
            try:
                reply = await self._blocking.command(
                    "BLPOP", *keys, BLOCK_SECONDS, block=BLOCK_SECONDS
                )
            except Exception as exc:
                if self._stopping_now():
                    return  # stop() closed the connection under the BLPOP
                if not is_redis_failure(exc):
                    raise
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            if reply is None:
                continue
            key, value = _text(reply[0]), _text(reply[1])
            if key == self._wake_key:
                self._woken(value)
            elif free:
                self._spawn(self._claim_quietly())

    async def _claim_quietly(self) -> None:
        try:
            await self._claim()
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            logger.info("consumer %s: claiming actors failed (%s); next heartbeat", self.name, exc)

    # ------------------------------------------------------------ claiming
    def _free(self) -> int:
        """Actor slots left on the local pool: its capacity less the actors this host
        holds and any the pool holds otherwise."""
        others = self.local.names() - set(self._held)
        return self.local.capacity() - len(self._held) - len(others)

    async def _claim(self) -> None:
        async with self._claiming:
            await self._claim_free()

    async def _claim_free(self) -> None:
        free = self._free()
        if free <= 0 or self._stopping or not self.local.types():
            return
        now = time.time()
        claims = await self._script(
            "claim",
            [self._registry],
            [
                now,
                now + self._window,
                self.name,
                free,
                RECORD_PREFIX + self.queue + ":",
                CALLS_PREFIX + self.queue + ":",
                STARTING_PREFIX + self.queue + ":",
                self.queue,
            ],
        )
        for name, kind, args, max_restarts, restarts, snapshot, holder, state in claims:
            held = _Held(
                name=_text(name),
                holder=_text(holder),
                base=int(restarts),
                max_restarts=int(max_restarts or 0),
                snapshot=snapshot or None,
            )
            old = self._held.get(held.name)
            if old is not None:
                await self._lose(old, "claimed again after this host lost its lease")
            self._held[held.name] = held
            self._spawn(self._start(held, _text(kind), args, _text(state)), held.tasks)

    async def _start(self, held: _Held, kind: str, raw_args: bytes, state: str) -> None:
        first = state == "starting"
        try:
            args = orjson.loads(raw_args or b"{}")
            if not isinstance(args, dict):
                raise TypeError("args are not an object")
        except (orjson.JSONDecodeError, TypeError) as exc:
            await self._give_up(
                held, JobError(f"its args are unreadable: {exc}"), "bad args", first=first
            )
            return
        try:
            held.ref = await self.local.create(
                kind, held.name, args, max(0, held.max_restarts - held.base), held.snapshot
            )
        except (ActorUnavailable, ActorExists) as exc:
            await self._release(held, f"no room here after all ({exc})")
            return
        except Qoper8Error as exc:
            why = f"it failed to start: {exc}"
            logger.warning("actor %r failed to start on consumer %s: %s", held.name, self.name, exc)
            await self._give_up(held, exc, why, first=first)
            return
        self._forward_events(held)
        info = held.ref.info()
        keys = [self._key(RECORD_PREFIX, held.name), self._key(STARTING_PREFIX, held.name)]
        told = await self._retry("start", "started", keys, [held.holder, info.child, info.pid])
        if not told:
            await self._lose(held, "it was destroyed while it started")
            return
        held.started = True
        if not held.busy:
            self._serve_soon(held)  # calls that waited for it

    async def _release(self, held: _Held, why: str) -> None:
        keys = [self._key(RECORD_PREFIX, held.name), self._registry, self._placing]
        died = orjson.dumps({"type": "ActorDied", "message": why, "will_restart": True})
        await self._retry("hand back", "release", keys, [held.holder, held.name, died])
        held.gone = True
        if self._held.get(held.name) is held:
            del self._held[held.name]
