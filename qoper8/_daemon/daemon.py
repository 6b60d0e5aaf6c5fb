"""``Daemon``: the master behind ``qoper8 serve``, run gunicorn's way.

It owns the pool, the HTTP API (and the Redis consumer when asked), the pidfile, the log
file, and the signal table. A signal handler only puts the signal number on a queue; one task
reads that queue and looks the signal up in ``Daemon.actions``, so every operation (resize,
reload, drain, upgrade) runs in order, on the event loop, never inside a handler. The HTTP
control endpoints go through the same queue. Parsing arguments is left to ``cli``; the size
rules (TTIN, TTOU, WINCH) to ``sizing``, USR2's re-execution to ``upgrade``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from .. import __version__
from .._text import plural
from ..errors import ConfigError, PoolClosed, Qoper8Error, StartFailed
from .http_api import HttpApi
from .inbox import Inbox
from .listeners import is_public, open_sockets, url_of
from .log import DaemonLog
from .pidfile import remove_pidfile, write_pidfile
from .redis_hook import RedisIntake
from .roles import describe_workers, make_pool
from .signal_actions import SignalActions
from .sizing import Sizing
from .upgrade import Upgrade, notify_ready, take_ready_fd

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable, Sequence

    from ..config import ServeConfig

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "EXIT_BIND_FAILED",
    "EXIT_CONFIG",
    "EXIT_CRASHED",
    "EXIT_OK",
    "EXIT_START_FAILED",
    "Daemon",
]

# Exit codes of `qoper8 serve` (dramatiq's RET_* idea); scripts and supervisors rely on them.
EXIT_OK: Final = 0  # stopped by TERM, INT or QUIT
EXIT_CRASHED: Final = 1  # an unexpected error; the log has the traceback
EXIT_CONFIG: Final = 2  # a bad setting (the same code argparse uses for a bad flag)
EXIT_START_FAILED: Final = 3  # the worker module failed to import or its children to start
EXIT_BIND_FAILED: Final = 4  # the address or socket could not be bound
EXIT_ALREADY_RUNNING: Final = 5  # the pidfile names a live process


logger = logging.getLogger("qoper8.daemon")
child_logger = logging.getLogger("qoper8.child")


class Daemon(SignalActions):
    """The master process of ``qoper8 serve``.

    Args:
        config: the validated settings.
        reload_config: reads the settings again for HUP (file and environment, then the
            same flags); without it HUP reloads the worker code only.
        argv: the ``qoper8`` command's arguments, for USR2 to start the new master with;
            without them USR2 is refused.

    Example:
        ```python
        code = asyncio.run(Daemon(load_config("qoper8.toml")).run())
        ```
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        reload_config: Callable[[], ServeConfig] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self._reload_config = reload_config
        self.pool = make_pool(config, self._child_output)
        self.sizing = Sizing(self.pool)
        self.upgrade = Upgrade(argv, config.pidfile)
        self.api = HttpApi(
            self.pool,
            self,
            token=config.token,
            max_body_bytes=config.max_body_bytes,
            debug=config.debug,
            access_log=config.access_log,
            public_health=config.public_health,
            dashboard=config.dashboard,
        )
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()  # the upgrade watcher, while one runs
        self._tg: asyncio.TaskGroup | None = None  # while serving
        self._exit_code = EXIT_OK
        self._started = time.time()
        self.log = DaemonLog()
        # Set when start-up ends, either way; `_start_error` says how it failed. Submits
        # that arrive before (even before pool.start() is called) wait on it.
        self._start_done = asyncio.Event()
        self._start_error: Qoper8Error | None = None
        # Redis jobs go through the API's recording pool: their errors show on the dashboard.
        self._redis = RedisIntake(self.api.pool, config)
        # The signal table: the one place that says what each signal does.
        self.actions: dict[signal.Signals, Callable[[], Awaitable[None]]] = {
            signal.SIGTERM: self.drain,
            signal.SIGINT: self.stop_fast,
            signal.SIGQUIT: self.stop_fast,
            signal.SIGHUP: self.reload_logged,
            signal.SIGTTIN: self.sizing.grow,
            signal.SIGTTOU: self.sizing.shrink,
            signal.SIGWINCH: self.pause,
            signal.SIGUSR1: self.reopen_logs,
            signal.SIGUSR2: self.start_upgrade,
        }
        self.inbox = Inbox(self.actions, lambda: self._stopping)

    # ================================================================ running

    async def run(self) -> int:
        """Serve until TERM, INT or QUIT (or a USR2's new master takes over); return the
        exit code."""
        self.log.setup(self.config)
        if not self._write_pidfile():
            self.log.close()
            return EXIT_ALREADY_RUNNING
        loop = asyncio.get_running_loop()
        try:
            for signum in self.actions:
                loop.add_signal_handler(signum, self.inbox.put_signal, signum)
            return await self._serve()
        except Exception:
            logger.exception("the daemon crashed")
            return EXIT_CRASHED
        finally:
            for signum in self.actions:
                loop.remove_signal_handler(signum)
            self._start_ended(PoolClosed("the daemon stopped"))
            self._remove_pidfile()
            self.log.close()

    async def _serve(self) -> int:
        cfg = self.config
        try:
            self._redis.check()
        except ConfigError as exc:
            logger.error("%s", exc)
            return EXIT_CONFIG
        # Set when a USR2 started this master: the old one serves until this one is ready,
        # so this one starts its children first and only then accepts.
        ready_fd = take_ready_fd(os.environ)
        unix = None if cfg.unix is None else os.fspath(cfg.unix)
        where = f"descriptors {cfg.fd}" if cfg.fd else unix or f"{cfg.host}:{cfg.port}"
        try:
            sockets, owned_unix, where = open_sockets(
                fds=cfg.fd, unix=unix, host=cfg.host, port=cfg.port, environ=os.environ
            )
        except OSError as exc:
            logger.error("cannot listen on %s: %s", where, exc.strerror or exc)
            return EXIT_BIND_FAILED
        if ready_fd is not None and unix is not None and f"unix:{unix}" in map(url_of, sockets):
            owned_unix = unix  # the old master made it; this one removes it when it stops
        try:
            if cfg.token is None and any(is_public(sock) for sock in sockets):
                logger.error(
                    "%s is reachable off this machine: set a token (--token or QOPER8_TOKEN)",
                    where,
                )
                return EXIT_CONFIG
            return await self._serve_on(sockets, owned_unix, where, ready_fd)
        finally:
            for sock in sockets:
                sock.close()

    async def _listen(self, sockets: list[socket.socket], owned_unix: str | None) -> None:
        await self.api.start(sockets, owned_unix=owned_unix)

    async def _serve_on(
        self,
        sockets: list[socket.socket],
        owned_unix: str | None,
        where: str,
        ready_fd: int | None,
    ) -> int:
        cfg = self.config
        # Listen first: /v1/health answers "starting" meanwhile, and submits wait until the
        # pool is open. (A new master of an upgrade waits instead: the old one serves.)
        try:
            if ready_fd is None:
                await self._listen(sockets, owned_unix)
        except OSError as exc:
            logger.error("cannot listen on %s: %s", where, exc.strerror or exc)
            return EXIT_BIND_FAILED
        try:
            logger.info(
                "%s; starting %s",
                f"listening on {' '.join(self.api.urls)}"
                if ready_fd is None
                else f"upgrading: will listen on {where} once ready",
                plural(self.pool.size, "child", "children"),
            )
            try:
                stopped_by = await self.inbox.unless_stopped(self.pool.start())
                if stopped_by is not None:
                    logger.info("%s while the children were starting: stopping", stopped_by.name)
                    self._start_ended(PoolClosed("the daemon stopped while it was starting"))
                    return EXIT_OK
            except StartFailed as exc:
                self._start_ended(exc)
                logger.error("children of %r failed to start: %s", describe_workers(cfg), exc)
                if exc.remote_traceback:
                    logger.error("the child's traceback:\n%s", exc.remote_traceback.rstrip())
                return EXIT_START_FAILED
            if ready_fd is not None:
                await self._listen(sockets, owned_unix)
                notify_ready(ready_fd)
            self._start_ended(None)
            logger.info(
                "ready: %s, %s of %r (pid %d)",
                " ".join(self.api.urls),
                plural(self.pool.size, "child", "children"),
                describe_workers(cfg),
                os.getpid(),
            )
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._redis.start(tg)
                tg.create_task(self.inbox.run())
                tg.create_task(self._stop_when_broken())
            return self._exit_code
        finally:
            self._tg = None
            self._stopping = True
            await self.pool.aclose(grace=0)
            await self.api.stop()
            logger.info("stopped")

    def _start_ended(self, error: Qoper8Error | None) -> None:
        if not self._start_done.is_set():
            self._start_error = error
            self._start_done.set()

    async def _stop_when_broken(self) -> None:
        """Exit with EXIT_START_FAILED once the pool gives up on children that keep failing
        to start (gunicorn's way), instead of answering 503 forever."""
        try:
            why = await self.pool.wait_broken()
        except PoolClosed:
            return  # the daemon is stopping anyway
        logger.error(
            "children of %r keep failing to start; stopping: %s",
            describe_workers(self.config),
            why,
        )
        self._exit_code = EXIT_START_FAILED
        self.inbox.put_signal(signal.SIGQUIT)

    # ================================================================ Control (for the API)

    @property
    def draining(self) -> bool:
        return self._stopping

    @property
    def default_timeout(self) -> float | None:
        return self.config.pool.timeout

    async def wait_started(self) -> None:
        """Return once the pool is open (at once afterwards).

        Raises:
            StartFailed: the children failed to start (the daemon is exiting).
            PoolClosed: the daemon was stopped before it was ready.
        """
        await self._start_done.wait()
        if self._start_error is not None:
            raise self._start_error

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "worker": describe_workers(self.config),
            "uptime": time.time() - self._started,
            "draining": self._stopping,
            "handlers": sorted(self.pool.handlers),
            "urls": self.api.urls,
            "redis": self.redis_state(),
        }

    def redis_state(self) -> dict[str, Any] | None:
        return self._redis.state()

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        """Change a role's number of children (or its autoscaling range), in turn with
        signals; returns its new size. ``role``: the first (the only one) when None."""

        async def run() -> int:
            await self.sizing.resize(children, role)
            return self.pool.role(role or self.sizing.first).size

        return await self.inbox.submit(run)

    async def reload(self) -> int:
        """What HUP does, in turn with signals; returns the new generation.

        Raises:
            ConfigError: the new settings are invalid; nothing changed.
            StartFailed: the new children failed to start; the old ones keep serving.
        """
        return await self.inbox.submit(self._reload_now)

    # ================================================================ files

    def _child_output(self, child_id: int, pid: int, line: str) -> None:
        child_logger.info(
            "child %d (pid %d): %s", child_id, pid, line, extra={"child": child_id, "pid": pid}
        )

    def _write_pidfile(self) -> bool:
        path = self.config.pidfile
        if path is None:
            return True
        other = write_pidfile(path)
        if other is not None:
            logger.error("pidfile %s names process %d, which is running", path, other)
            return False
        return True

    def _remove_pidfile(self) -> None:
        if self.upgrade.pidfile is not None:  # PIDFILE.oldbin after an upgrade
            remove_pidfile(self.upgrade.pidfile)


def run_daemon(
    config: ServeConfig,
    reload_config: Callable[[], ServeConfig] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run ``qoper8 serve`` to the end and return its exit code."""
    try:
        return asyncio.run(Daemon(config, reload_config=reload_config, argv=argv).run())
    except Qoper8Error as exc:
        print(f"qoper8 serve: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CRASHED
