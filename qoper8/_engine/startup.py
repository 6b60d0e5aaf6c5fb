"""Starting a group of children together (the pool's start, a reload's new generation): all
ready, or the first failure as ``StartFailed`` with the child's own error, and nothing left
running.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

from ..errors import StartFailed
from .child_process import ChildStartError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ..config import PoolConfig
    from .child import Child

__all__ = ["RETIRE_TIMEOUT", "start_error", "start_together"]

# Children asked to retire get this long to run their stop hooks before they are killed; the
# same bound applies to reaping the children of a start that failed.
RETIRE_TIMEOUT: Final = 5.0


async def start_together(
    children: list[Child],
    spawn_and_wait: Callable[[Child], Coroutine[Any, Any, None]],
    config: PoolConfig,
) -> None:
    """Spawn ``children`` together and wait until all are ready; on the first failure
    cancel the rest and raise ``StartFailed`` (the caller cleans up)."""
    if not children:
        return  # an autoscaled pool may start with none
    tasks = [asyncio.create_task(spawn_and_wait(c)) for c in children]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        # Cancelled (a daemon stopping mid-reload): children already spawned must not
        # linger in their start hooks until the pool closes.
        for t in tasks:
            t.cancel()
        for c in children:
            c.kill("start cancelled")
        raise
    failed = next((t for t in done if not t.cancelled() and t.exception() is not None), None)
    if failed is None:
        return
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in children:
        c.kill("another child failed to start")
    # Reap them before reporting, so that the caller never sees a half-dead generation.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RETIRE_TIMEOUT):
            await asyncio.gather(*(c.wait_exited() for c in children if c.pid is not None))
    raise start_error(failed.exception(), config)


def start_error(exc: BaseException | None, config: PoolConfig) -> StartFailed:
    """The caller's StartFailed for what ended a child's start."""
    if isinstance(exc, ChildStartError):
        return StartFailed(
            f"{exc} (worker {config.worker!r})",
            remote_type=exc.remote_type,
            remote_message=exc.remote_message,
            remote_traceback=exc.remote_traceback,
        )
    if isinstance(exc, TimeoutError):
        return StartFailed(
            f"children of {config.worker!r} were not ready within "
            f"start_timeout={config.start_timeout}s"
        )
    return StartFailed(f"could not spawn a child for {config.worker!r}: {exc!r}")
