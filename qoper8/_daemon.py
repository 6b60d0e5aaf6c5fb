"""``Daemon``: the master behind ``qoper8 serve``, run gunicorn's way.

It owns the pool, the HTTP API (and the Redis consumer when asked), the pidfile, the log
file, and the signal table. A signal handler only puts the signal number on a queue; one task
reads that queue and looks the signal up in ``Daemon.actions``, so every operation (resize,
reload, drain) runs in order, on the event loop, never inside a handler. The HTTP control
endpoints go through the same queue. Parsing arguments is left to ``_cli``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from . import __version__
from ._output import NonBlockingLog
from ._pool import Pool
from ._transport._http import HttpApi
from .errors import ConfigError, PoolClosed, Qoper8Error, StartFailed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from .config import ServeConfig

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

# Signals that stop the daemon; they interrupt a resize or reload still waiting for children.
STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
# Signals that cut a TERM drain short.
FAST_STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGQUIT})
# Consumers (Redis) get this long to hand back their in-flight jobs on a fast stop (INT).
FAST_STOP_TIMEOUT: Final = 2.0

LOG_FORMAT: Final = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"

logger = logging.getLogger("qoper8.daemon")
child_logger = logging.getLogger("qoper8.child")


class ReopenableFileHandler(logging.FileHandler):
    """A file handler that USR1 can point at a fresh file after logrotate moved the old one."""

    def reopen(self, path: str | None = None) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            if path is not None:
                self.baseFilename = os.path.abspath(path)
            self.stream = self._open()
        finally:
            self.release()


@dataclass(slots=True)
class _Request:
    """An operation the HTTP API asked for, run by the signal task in turn."""

    run: Callable[[], Awaitable[int]]
    future: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Daemon:
    """The master process of ``qoper8 serve``.

    Args:
        config: the validated settings.
        reload_config: reads the settings again for HUP (file and environment, then the
            same flags); without it HUP reloads the worker code only.

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
    ) -> None:
        self.config = config
        self._reload_config = reload_config
        self.pool = Pool(config=config.pool, on_output=self._child_output)
        self.api = HttpApi(
            self.pool,
            self,
            token=config.token,
            max_body_bytes=config.max_body_bytes,
            debug=config.debug,
        )
        self._inbox: asyncio.Queue[signal.Signals | _Request] = asyncio.Queue()
        self._stopping = False
        self._exit_code = EXIT_OK
        self._started = time.time()
        self._log_handler: logging.Handler | None = None
        self._log_queue: NonBlockingLog | None = None
        self._consumer: Any = None
        self._consumer_task: asyncio.Task[None] | None = None
        self._backlog: deque[signal.Signals | _Request] = deque()
        # The signal table: the one place that says what each signal does.
        self.actions: dict[signal.Signals, Callable[[], Awaitable[None]]] = {
            signal.SIGTERM: self.drain,
            signal.SIGINT: self.stop_fast,
            signal.SIGQUIT: self.stop_fast,
            signal.SIGHUP: self.reload_logged,
            signal.SIGTTIN: self.grow,
            signal.SIGTTOU: self.shrink,
            signal.SIGUSR1: self.reopen_logs,
        }

    # ================================================================ running

    async def run(self) -> int:
        """Serve until TERM, INT or QUIT; return the exit code."""
        self.setup_logging()
        if not self._write_pidfile():
            self.close_logging()
            return EXIT_ALREADY_RUNNING
        loop = asyncio.get_running_loop()
        try:
            for signum in self.actions:
                loop.add_signal_handler(signum, self._inbox.put_nowait, signum)
            return await self._serve()
        except Exception:
            logger.exception("the daemon crashed")
            return EXIT_CRASHED
        finally:
            for signum in self.actions:
                loop.remove_signal_handler(signum)
            self._remove_pidfile()
            self.close_logging()

    async def _serve(self) -> int:
        cfg = self.config
        try:
            consumer_cls = self._consumer_class()
        except ConfigError as exc:
            logger.error("%s", exc)
            return EXIT_CONFIG
        # Listen first: a taken port fails at once, not after the children started, and
        # /v1/health answers "starting" meanwhile (submits get 503 until the pool is open).
        try:
            unix = None if cfg.unix is None else os.fspath(cfg.unix)
            urls = await self.api.start(host=cfg.host, port=cfg.port, unix=unix)
        except OSError as exc:
            where = cfg.unix or f"{cfg.host}:{cfg.port}"
            logger.error("cannot listen on %s: %s", where, exc.strerror or exc)
            return EXIT_BIND_FAILED
        try:
            logger.info("listening on %s; starting %d children", " ".join(urls), self.pool.size)
            try:
                stopped_by = await self._unless_stopped(self.pool.start())
                if stopped_by is not None:
                    logger.info("%s while the children were starting: stopping", stopped_by.name)
                    return EXIT_OK
            except StartFailed as exc:
                logger.error("children of %r failed to start: %s", cfg.pool.worker, exc)
                if exc.remote_traceback:
                    logger.error("the child's traceback:\n%s", exc.remote_traceback.rstrip())
                return EXIT_START_FAILED
            logger.info(
                "ready: %s, %d children of %r (pid %d)",
                " ".join(urls),
                self.pool.size,
                cfg.pool.worker,
                os.getpid(),
            )
            async with asyncio.TaskGroup() as tg:
                if consumer_cls is not None:
                    self._consumer = consumer_cls(
                        self.pool,
                        url=cfg.redis,
                        queue=cfg.queue,
                        lease=cfg.redis_lease,
                        max_retries=cfg.redis_max_retries,
                        grace=cfg.grace,
                    )
                    self._consumer_task = tg.create_task(self._consumer.run())
                    logger.info("consuming Redis queue %r", cfg.queue)
                tg.create_task(self._act_on_signals())
                tg.create_task(self._stop_when_broken())
            return self._exit_code
        finally:
            self._stopping = True
            await self.pool.aclose(grace=0)
            await self.api.stop()
            logger.info("stopped")

    async def _stop_when_broken(self) -> None:
        """Exit with EXIT_START_FAILED once the pool gives up on children that keep failing
        to start (gunicorn's way), instead of answering 503 forever."""
        try:
            why = await self.pool.wait_broken()
        except PoolClosed:
            return  # the daemon is stopping anyway
        logger.error(
            "children of %r keep failing to start; stopping: %s", self.config.pool.worker, why
        )
        self._exit_code = EXIT_START_FAILED
        self._inbox.put_nowait(signal.SIGQUIT)

    async def _unless_stopped(
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

    def _consumer_class(self) -> Any:
        if self.config.redis is None:
            return None
        try:
            from ._transport._redis import RedisConsumer
        except ImportError as exc:
            raise ConfigError(
                f"--redis needs Redis mode (pip install 'qoper8[redis]'): {exc}"
            ) from None
        return RedisConsumer

    async def _act_on_signals(self) -> None:
        """The one task that acts on signals and control requests, in arrival order.

        Actions run one at a time. A stop signal (TERM, INT, QUIT) that arrives while a
        resize or reload waits for slow children interrupts it rather than waiting up to
        ``start_timeout`` behind it; anything else waits its turn.
        """
        backlog = self._backlog
        while not self._stopping:
            item = backlog.popleft() if backlog else await self._inbox.get()
            if _stops(item):
                # A drain can itself be cut short: INT or QUIT during a TERM's grace period
                # stops at once (the pool kills what still runs).
                stopped_by = await self._unless_stopped(self._act(item), FAST_STOP_SIGNALS)
                if stopped_by is not None:
                    await self._act(stopped_by)
                continue
            stopped_by = await self._unless_stopped(self._act(item))
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

    async def _submit_request(self, run: Callable[[], Awaitable[int]]) -> int:
        if self._stopping:
            raise PoolClosed("the daemon is shutting down")
        request = _Request(run)
        # Mark an error as seen even if its caller went away (no "never retrieved" noise).
        request.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inbox.put_nowait(request)
        # Shielded: a caller that goes away (an HTTP client disconnecting) does not cancel
        # an operation the daemon has accepted; it runs in its turn all the same.
        return await asyncio.shield(request.future)

    # ================================================================ the signal actions

    async def drain(self) -> None:
        """TERM: stop intake, let queued and running jobs finish for up to ``grace`` seconds,
        kill what is left, and stop."""
        self._stopping = True
        logger.info(
            "draining: up to %gs for %d queued and %d running jobs",
            self.config.grace,
            self.pool.statistics().queue_length,
            self.pool.statistics().running,
        )
        await self._stop_consumer(limit=None)
        await self.pool.aclose(grace=self.config.grace)

    async def stop_fast(self) -> None:
        """INT, QUIT: stop now; running jobs fail with PoolClosed."""
        self._stopping = True
        await self._stop_consumer(limit=FAST_STOP_TIMEOUT, grace=0.0)
        await self.pool.aclose(grace=0)

    async def _stop_consumer(self, limit: float | None, grace: float | None = None) -> None:
        """Stop taking Redis jobs; running ones get ``grace`` (default: the daemon's) to
        finish before they are handed back to the queue."""
        task = self._consumer_task
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(limit):
                await self._consumer.stop(grace=grace)
                await asyncio.wait({task})
        except TimeoutError:
            logger.warning("the Redis consumer did not stop within %gs; cancelling it", limit)
        task.cancel()

    async def _reload_now(self) -> int:
        """HUP: read the settings again and start a new generation of children with them
        (old ones retire as each finishes its job). Return the new generation.

        The pool's settings (worker module, timeouts, limits) take effect with the new
        generation. Its size follows the file only when the file's ``children`` changed, so
        a size set by TTIN/TTOU or resize survives a plain HUP.

        Raises:
            ConfigError: the new settings are invalid; nothing changed.
            StartFailed: the new children failed to start; the old ones, and all the old
                settings, keep serving.
        """
        old = self.config
        new = self._reload_config() if self._reload_config is not None else old
        pool_config = new.pool
        if new.pool.children == old.pool.children:
            pool_config = new.pool.model_copy(update={"children": self.pool.size})
        await self.pool.reload(pool_config)
        self._apply_daemon_settings(new)
        logger.info("reloaded: generation %d, %d children", self.pool.generation, self.pool.size)
        return self.pool.generation

    async def reload_logged(self) -> None:
        try:
            await self._reload_now()
        except ConfigError as exc:
            logger.error("reload refused, the running settings stay: %s", exc)
        except StartFailed as exc:
            logger.error("reload failed, the old children and settings keep serving: %s", exc)

    def _apply_daemon_settings(self, new: ServeConfig) -> None:
        old = self.config
        fixed = [
            name
            for name in ("host", "port", "unix", "max_body_bytes", "pidfile", "redis", "queue")
            if getattr(new, name) != getattr(old, name)
        ]
        if fixed:
            logger.warning("settings that take effect at restart only: %s", ", ".join(fixed))
        self.api.set_token(new.token)
        self.api.debug = new.debug
        logging.getLogger("qoper8").setLevel(new.log_level)
        handler = self._log_handler
        if new.log_file not in (None, old.log_file) and isinstance(handler, ReopenableFileHandler):
            handler.reopen(os.fspath(new.log_file))
        self.config = new

    async def grow(self) -> None:
        """TTIN: one child more."""
        await self.pool.resize(self.pool.size + 1)
        logger.info("resized to %d children", self.pool.size)

    async def shrink(self) -> None:
        """TTOU: one child fewer (never below one)."""
        if self.pool.size > 1:
            await self.pool.resize(self.pool.size - 1)
        logger.info("resized to %d children", self.pool.size)

    async def reopen_logs(self) -> None:
        """USR1: reopen the log file (after logrotate moved it)."""
        if isinstance(self._log_handler, ReopenableFileHandler):
            self._log_handler.reopen()
            logger.info("log file reopened")

    # ================================================================ Control (for the API)

    @property
    def draining(self) -> bool:
        return self._stopping

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "worker": self.config.pool.worker,
            "uptime": time.time() - self._started,
            "draining": self._stopping,
            "handlers": sorted(self.pool.handlers),
            "urls": self.api.urls,
        }

    async def resize(self, children: int) -> int:
        """Change the number of children, in turn with signals; returns the new size."""

        async def run() -> int:
            await self.pool.resize(children)
            return self.pool.size

        return await self._submit_request(run)

    async def reload(self) -> int:
        """What HUP does, in turn with signals; returns the new generation.

        Raises:
            ConfigError: the new settings are invalid; nothing changed.
            StartFailed: the new children failed to start; the old ones keep serving.
        """
        return await self._submit_request(self._reload_now)

    # ================================================================ files

    def setup_logging(self) -> None:
        """Send qoper8's log to the log file (or stderr) at the configured level."""
        root = logging.getLogger("qoper8")
        root.setLevel(self.config.log_level)
        handler: logging.Handler
        if self.config.log_file is not None:
            handler = ReopenableFileHandler(os.fspath(self.config.log_file), delay=False)
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        # Written from a thread: a full disk or a stalled stderr reader must not stop the loop.
        self._log_queue = NonBlockingLog(root, handler)
        root.propagate = False
        self._log_handler = handler

    def close_logging(self) -> None:
        """Write what is still queued, then close the log."""
        if self._log_queue is not None:
            self._log_queue.close()
            self._log_queue = None
        if self._log_handler is not None:
            self._log_handler.close()
            self._log_handler = None

    def _child_output(self, child_id: int, pid: int, line: str) -> None:
        child_logger.info("child %d (pid %d): %s", child_id, pid, line)

    def _write_pidfile(self) -> bool:
        path = self.config.pidfile
        if path is None:
            return True
        other = _read_pid(path)
        if other is not None and other != os.getpid() and _pid_alive(other):
            logger.error("pidfile %s names process %d, which is running", path, other)
            return False
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
        return True

    def _remove_pidfile(self) -> None:
        path = self.config.pidfile
        if path is not None and _read_pid(path) == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(path)


def _stops(item: signal.Signals | _Request) -> bool:
    return isinstance(item, signal.Signals) and item in STOP_SIGNALS


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_daemon(config: ServeConfig, reload_config: Callable[[], ServeConfig] | None = None) -> int:
    """Run ``qoper8 serve`` to the end and return its exit code."""
    try:
        return asyncio.run(Daemon(config, reload_config=reload_config).run())
    except Qoper8Error as exc:
        print(f"qoper8 serve: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CRASHED
