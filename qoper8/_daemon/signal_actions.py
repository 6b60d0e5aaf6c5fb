"""What each signal does: the methods the daemon's signal table (``Daemon.actions``) points
at. TERM drains, INT and QUIT stop fast, HUP reloads, USR1 reopens the log, USR2 upgrades;
WINCH pauses the pool; TTIN, TTOU and the size rules are ``sizing``'s.

Each runs on the daemon's one signal task (``inbox``), one at a time. Kept apart from the
daemon's start-up and its answers to the API, which are ``daemon``'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Final

from .._text import plural
from ..errors import ConfigError, PoolClosed, StartFailed

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from .._engine.pool import Pool
    from ..config import PoolConfig, ServeConfig
    from .http_api import HttpApi
    from .inbox import Inbox
    from .log import DaemonLog
    from .redis_hook import RedisIntake
    from .sizing import Sizing
    from .upgrade import Upgrade

__all__ = ["FAST_STOP_TIMEOUT", "HANDOVER_TIMEOUT", "RESTART_ONLY", "SignalActions"]

# Settings a HUP cannot change in a running daemon (the listening socket, the Redis
# consumer, the access logger are made once); a changed one is logged as needing a restart.
RESTART_ONLY: Final = ("host", "port", "unix", "fd", "max_body_bytes", "pidfile", "redis",
                       "queue", "access_log", "dashboard")  # fmt: skip
# Consumers (Redis) get this long to hand back their in-flight jobs on a fast stop (INT).
FAST_STOP_TIMEOUT: Final = 2.0
# A handover (USR2) waits this long for clients to leave the old master's connections
# (each leaves after its next answer) before it closes the idle ones. A client idle longer
# has no request in flight; it reconnects, to the new master.
HANDOVER_TIMEOUT: Final = 5.0

logger = logging.getLogger("qoper8.daemon")


class SignalActions:
    """The signal actions of ``Daemon``, which provides what is declared here."""

    config: ServeConfig
    pool: Pool
    api: HttpApi
    log: DaemonLog
    sizing: Sizing
    upgrade: Upgrade
    inbox: Inbox
    _redis: RedisIntake
    _reload_config: Callable[[], ServeConfig] | None
    _stopping: bool
    _tasks: set[asyncio.Task[None]]
    _tg: asyncio.TaskGroup | None

    async def drain(self) -> None:
        """TERM: stop intake, let queued and running jobs finish for up to ``grace`` seconds,
        kill what is left, and stop."""
        self._begin_stop()
        stats = self.pool.statistics()
        logger.info(
            "draining: up to %gs for %s and %s",
            self.config.grace,
            plural(stats.queue_length, "queued job"),
            plural(stats.running, "running job"),
        )
        await self._redis.stop(limit=None)
        await self.pool.aclose(grace=self.config.grace)

    async def stop_fast(self) -> None:
        """INT, QUIT: stop now; running jobs fail with PoolClosed."""
        self._begin_stop()
        await self._redis.stop(limit=FAST_STOP_TIMEOUT, grace=0.0)
        await self.pool.aclose(grace=0)

    async def _reload_now(self) -> int:
        """HUP: read the settings again and start a new generation of children with them
        (old ones retire as each finishes its job), role by role. Return the new generation.

        The pool's settings (worker module, timeouts, limits) take effect with the new
        generation. A role's size follows the file only when the file's ``children``
        changed, so a size set by TTIN/TTOU or resize survives a plain HUP.

        Raises:
            ConfigError: the new settings are invalid, or add or remove roles (a restart
                does that: USR2); nothing changed.
            StartFailed: a role's new children failed to start; its old ones, and all the
                old settings, keep serving (the roles before it have their new generation).
        """
        old = self.config
        new = self._reload_config() if self._reload_config is not None else old
        if not old.roles and not new.roles:
            await self.pool.reload(self._kept_size(self.pool, old.pool, new.pool))
        else:
            before, after = old.pool_configs(), new.pool_configs()
            if list(before) != list(after) or not new.roles or not old.roles:
                raise ConfigError(
                    f"the roles changed ({', '.join(before)} -> {', '.join(after)}): roles are "
                    f"added or removed at a restart (USR2 upgrades without a refused "
                    f"connection); the running roles keep serving"
                )
            done: list[str] = []
            for name, config in after.items():
                kept = self._kept_size(self.pool.role(name), before[name], config)
                try:
                    await self.pool.reload(kept, role=name)
                except StartFailed as exc:
                    also = f" (reloaded before it: {', '.join(done)})" if done else ""
                    raise StartFailed(f"role {name!r}: {exc}{also}") from exc
                done.append(name)
        self._apply_daemon_settings(new)
        logger.info(
            "reloaded: generation %d, %s",
            self.pool.generation,
            plural(self.pool.size, "child", "children"),
        )
        return self.pool.generation

    @staticmethod
    def _kept_size(pool: Pool, old: PoolConfig, new: PoolConfig) -> PoolConfig:
        """``new``, with the size or range the role runs at now when the file's did not
        change (after WINCH, the size before it: a HUP ends a pause)."""
        if (new.children, new.max_children) != (old.children, old.max_children):
            return new
        now = pool.config
        return new.model_copy(update={"children": now.children, "max_children": now.max_children})

    async def reload_logged(self) -> None:
        try:
            await self._reload_now()
        except ConfigError as exc:
            logger.error("reload refused, the running settings stay: %s", exc)
        except StartFailed as exc:
            logger.error("reload failed, the old children and settings keep serving: %s", exc)

    def _apply_daemon_settings(self, new: ServeConfig) -> None:
        old = self.config
        fixed = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
        if new.queues() != old.queues() and "queue" not in fixed:
            fixed.append("queue")
        if fixed:
            logger.warning("settings that take effect at restart only: %s", ", ".join(fixed))
        self.api.set_token(new.token)
        self.api.debug = new.debug
        self.api.public_health = new.public_health
        self.log.apply(new)
        if new.log_file is not None and new.log_file != old.log_file:
            self.log.move(os.fspath(new.log_file))
        self.config = new

    def _begin_stop(self) -> None:
        self._stopping = True
        self.api.events.close_all()  # dashboards learn at once, not at the end of the drain
        self.api.actor_routes.close_all()  # actor subscribers too (an "end" event)
        for task in self._tasks:
            task.cancel()  # an upgrade's watcher: the new master carries on by itself

    async def start_upgrade(self) -> None:
        """USR2: start a new master (the installed qoper8) on this one's sockets; once it
        is ready, hand over to it and drain (``upgrade`` has the sequence)."""
        why = self.upgrade.refusal()
        if why is None and self._tg is None:
            why = "the daemon is not serving yet"
        if why is not None:
            logger.error("USR2: no upgrade: %s", why)
            return
        assert self._tg is not None
        try:
            self.upgrade.spawn(self.api.server.sockets)
        except OSError as exc:
            logger.error("USR2: could not start a new master: %s", exc)
            return
        task = self._tg.create_task(self._watch_upgrade())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_upgrade(self) -> None:
        if await self.upgrade.wait_ready():
            with contextlib.suppress(PoolClosed):
                await self.inbox.submit(self._hand_over)

    async def _hand_over(self) -> int:
        """The new master serves: stop accepting, let this one's clients leave (the
        pool serves what they still send), then drain as on TERM."""
        self.api.events.close_all("upgraded")
        self.api.actor_routes.close_all("upgraded")
        await self.api.server.hand_over(HANDOVER_TIMEOUT)
        await self.api.stop()
        await self.drain()
        return 0  # (inbox requests answer a number)

    async def pause(self) -> None:
        """WINCH: retire every child, keep the master (``sizing``). Ignored when the daemon
        runs in a terminal, as unicorn does: a terminal sends WINCH to its foreground
        processes each time its window is resized."""
        if _in_a_terminal():
            logger.warning(
                "WINCH ignored: this daemon runs in a terminal, which sends WINCH when its "
                "window is resized; run it detached (stdin not a terminal) to use WINCH"
            )
            return
        await self.sizing.pause()

    async def reopen_logs(self) -> None:
        """USR1: reopen the log file (after logrotate moved it)."""
        if self.log.reopen():
            logger.info("log file reopened")


def _in_a_terminal() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False
