"""The daemon's inbox: the one queue that signals and control requests (the HTTP API's
resize and reload) go through, and the one task that acts on them in arrival order.

A signal handler only puts the signal number here (gunicorn's "just queue the signal"). What
each signal does is the daemon's ``actions`` table; this module only runs them, one at a
time, letting a stop signal interrupt a slow one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..errors import PoolClosed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = ["FAST_STOP_SIGNALS", "STOP_SIGNALS", "Inbox"]

# Signals that stop the daemon; they interrupt a resize or reload still waiting for children.
STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
# Signals that cut a TERM drain short.
FAST_STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGQUIT})

logger = logging.getLogger("qoper8.daemon")


@dataclass(slots=True)
class _Request:
    """An operation the HTTP API asked for, run by the signal task in turn."""

    run: Callable[[], Awaitable[int]]
    future: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Inbox:
    """Signals and control requests, acted on one at a time.

    Args:
        actions: what each signal does (the daemon's signal table).
        stopping: whether the daemon is stopping (the task then ends).
    """

    def __init__(
        self,
        actions: Mapping[signal.Signals, Callable[[], Awaitable[None]]],
        stopping: Callable[[], bool],
    ) -> None:
        self.actions = actions
        self._stopping = stopping
        self._inbox: asyncio.Queue[signal.Signals | _Request] = asyncio.Queue()
        self._backlog: deque[signal.Signals | _Request] = deque()

    def put_signal(self, signum: signal.Signals) -> None:
        """Queue a signal (safe to call from ``loop.add_signal_handler``)."""
        self._inbox.put_nowait(signum)

    async def unless_stopped(
        self, work: Awaitable[None], stops: frozenset[signal.Signals] = STOP_SIGNALS
    ) -> signal.Signals | None:
        """Run ``work`` unless a stop signal arrives first; then cancel it and return that
        signal. Other signals and requests that arrive meanwhile wait in the backlog."""
        task = asyncio.ensure_future(work)
        while not task.done():
            getter = asyncio.create_task(self._inbox.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                await asyncio.wait({getter})
            if getter.cancelled():
                continue
            item = getter.result()
            if isinstance(item, signal.Signals) and item in stops:
                task.cancel()
                await asyncio.wait({task})
                return item
            self._backlog.append(item)
        task.result()
        return None

    async def run(self) -> None:
        """The one task that acts on signals and control requests, in arrival order.

        Actions run one at a time. A stop signal (TERM, INT, QUIT) that arrives while a
        resize or reload waits for slow children interrupts it rather than waiting up to
        ``start_timeout`` behind it; anything else waits its turn.
        """
        backlog = self._backlog
        while not self._stopping():
            item = backlog.popleft() if backlog else await self._inbox.get()
            if _stops(item):
                # A drain can itself be cut short: INT or QUIT during a TERM's grace period
                # stops at once (the pool kills what still runs).
                stopped_by = await self.unless_stopped(self._act(item), FAST_STOP_SIGNALS)
                if stopped_by is not None:
                    await self._act(stopped_by)
                continue
            stopped_by = await self.unless_stopped(self._act(item))
            if stopped_by is not None:  # it was cut short; now act on the stop signal
                await self._act(stopped_by)
        # Anything still waiting will not run: tell its caller.
        while not self._inbox.empty():
            backlog.append(self._inbox.get_nowait())
        for item in backlog:
            if isinstance(item, _Request) and not item.future.done():
                item.future.set_exception(PoolClosed("the daemon is shutting down"))

    async def _act(self, item: signal.Signals | _Request) -> None:
        if isinstance(item, _Request):
            try:
                result = await item.run()
            except asyncio.CancelledError:
                if not item.future.done():
                    item.future.set_exception(PoolClosed("interrupted: the daemon is stopping"))
                raise
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
                else:
                    logger.error("a control request failed: %s", exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)
            return
        logger.info("received %s", item.name)
        try:
            await self.actions[item]()
        except asyncio.CancelledError:
            logger.warning("%s interrupted: the daemon is stopping", item.name)
            raise
        except Exception:
            logger.exception("acting on %s failed", item.name)

    async def submit(self, run: Callable[[], Awaitable[int]]) -> int:
        if self._stopping():
            raise PoolClosed("the daemon is shutting down")
        request = _Request(run)
        # Mark an error as seen even if its caller went away (no "never retrieved" noise).
        request.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inbox.put_nowait(request)
        # Shielded: a caller that goes away (an HTTP client disconnecting) does not cancel
        # an operation the daemon has accepted; it runs in its turn all the same.
        return await asyncio.shield(request.future)


def _stops(item: signal.Signals | _Request) -> bool:
    return isinstance(item, signal.Signals) and item in STOP_SIGNALS
