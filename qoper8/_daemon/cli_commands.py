"""The client commands of ``qoper8`` (status, health, submit, resize, reload) and ``stop``.

Each is one ``Client`` call (or, for ``stop``, one signal to the pid in the pidfile) plus
its exit code. Where the daemon is, and its token, come from flags, then the daemon's own
config file (``--config``), then ``QOPER8_URL`` / ``QOPER8_TOKEN``. Parsing is ``cli``'s.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._config_sources import merge_sources
from .._text import plural
from ..config import DEFAULT_GRACE, DEFAULT_HOST, DEFAULT_PORT, ENV_PREFIX
from ..errors import ConfigError, Qoper8Error, TransportError
from .cli_status import format_status

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Mapping

    from .._client import Client

__all__ = [
    "CLIENT_COMMANDS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "daemon_url",
    "run_client_command",
    "stop",
]

# Exit codes of the client commands (status, submit, resize, reload, health, stop). `serve`
# has its own, in daemon.py (EXIT_CONFIG, EXIT_START_FAILED, ...). Scripts rely on them.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the daemon answered an error (JobFailed, 401, ...); health: not ready
EXIT_USAGE: Final = 2  # a bad argument (argparse uses 2 as well)
EXIT_UNREACHABLE: Final = 6  # the daemon could not be reached (TransportError)

# `stop` waits this much longer than the daemon's grace period for the process to go: the
# drain may take all of `grace`, then children are killed and the log flushed.
STOP_MARGIN: Final = 10.0
# How often `stop` checks for the process where pidfds are not available (not Linux).
STOP_POLL: Final = 0.05
# A bind-all address is not where a client connects; the loopback of the same family is.
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": DEFAULT_HOST}


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def daemon_url(settings: Mapping[str, Any]) -> str:
    """The URL a client uses to reach a daemon run with these (raw) settings."""
    unix = settings.get("unix")
    if unix:
        return f"unix:{os.fspath(unix)}"
    host = str(settings.get("host") or DEFAULT_HOST).strip("[]")
    host = _WILDCARDS.get(host, host)
    port = settings.get("port") or DEFAULT_PORT
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name
    return f"http://{host}:{port}"


def _daemon_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The daemon's settings from its config file and the environment, as it reads them."""
    if getattr(args, "config", None) is None:
        return {}
    merged, _ = merge_sources(args.config)
    return merged


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    """Where the daemon is and its token: flags, then --config, then the environment."""
    from .._client import DEFAULT_URL

    settings = _daemon_settings(args)
    url = args.url or (daemon_url(settings) if settings else None)
    token = args.token or settings.get("token")
    url = url or os.environ.get(ENV_PREFIX + "URL") or DEFAULT_URL
    token = token or os.environ.get(ENV_PREFIX + "TOKEN") or None
    return url, None if token is None else str(token)


def run_client_command(
    args: argparse.Namespace,
    command: Callable[[Client, argparse.Namespace], Awaitable[int]] | None = None,
) -> int:
    """Run one client command (``CLIENT_COMMANDS``' unless given) against the daemon;
    return its exit code."""
    command = command or CLIENT_COMMANDS[args.command]
    try:
        url, token = _target(args)
    except ConfigError as exc:
        _err(f"qoper8 {args.command}: {exc}")
        return EXIT_USAGE
    return asyncio.run(_with_client(command, args, url, token))


async def _with_client(
    command: Callable[[Client, argparse.Namespace], Awaitable[int]],
    args: argparse.Namespace,
    url: str,
    token: str | None,
) -> int:
    from .._client import Client, Unauthorized

    unreachable = EXIT_FAILED if args.command == "health" else EXIT_UNREACHABLE
    try:
        async with Client(url, token=token) as client:
            return await command(client, args)
    except Unauthorized as exc:
        _err(f"qoper8 {args.command}: unauthorized: {exc}")
        return EXIT_FAILED
    except TransportError as exc:
        _err(f"qoper8 {args.command}: {exc}")
        return unreachable
    except Qoper8Error as exc:
        _err(f"qoper8 {args.command}: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except ValueError as exc:
        _err(f"qoper8 {args.command}: {exc}")
        return EXIT_USAGE


async def _submit(client: Client, args: argparse.Namespace) -> int:
    raw = sys.stdin.read() if args.action == "-" else args.action
    try:
        action = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _err(f"qoper8 submit: the action is not valid JSON: {exc}")
        return EXIT_USAGE
    if not isinstance(action, dict):
        _err("qoper8 submit: the action must be a JSON object with a 'type' field")
        return EXIT_USAGE
    kwargs: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    if getattr(args, "role", None) is not None:
        kwargs["role"] = args.role
    if getattr(args, "stream", False):
        return await _stream(client, action, kwargs)
    result = await client.submit(action, **kwargs)
    _out(orjson.dumps(result).decode())
    return EXIT_OK


async def _stream(client: Client, action: dict[str, Any], kwargs: dict[str, Any]) -> int:
    """``submit --stream``: each message a JSON line on stdout as it comes, progress on
    stderr, then the result (a failure after the messages sent before it)."""

    def progress(value: object) -> None:
        _err("progress: " + orjson.dumps(value).decode())

    async with client.stream(action, on_progress=progress, **kwargs) as stream:
        async for message in stream:
            sys.stdout.write(orjson.dumps(message).decode() + "\n")
            sys.stdout.flush()
        _out(orjson.dumps(stream.result).decode())
    return EXIT_OK


def resize_request(text: str) -> dict[str, Any]:
    """``qoper8 resize``'s SIZE as ``Client.resize``'s arguments: ``N``, ``+N`` / ``-N``
    (a delta) or ``MIN:MAX`` (a range).

    Raises:
        ValueError: none of these.
    """
    text = text.strip()
    try:
        if ":" in text:
            least, most = text.split(":", 1)
            return {"children": (int(least), int(most))}
        number = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not N, +N, -N or MIN:MAX") from None
    return {"delta": number} if text.startswith(("+", "-")) else {"children": number}


async def _resize(client: Client, args: argparse.Namespace) -> int:
    role, text = (args.children, args.size) if args.size is not None else (None, args.children)
    try:
        request = resize_request(text)
    except ValueError as exc:
        _err(f"qoper8 resize: {exc}")
        return EXIT_USAGE
    size = await client.resize(**request, force=args.force, role=role)
    scaled = request.get("children")
    also = f" (autoscaling {scaled[0]}:{scaled[1]})" if isinstance(scaled, tuple) else ""
    _out(f"children: {size}{also}" + (f" (role {role})" if role else ""))
    return EXIT_OK


async def _reload(client: Client, args: argparse.Namespace) -> int:
    generation = await client.reload()
    _out(f"generation: {generation}")
    return EXIT_OK


async def _status(client: Client, args: argparse.Namespace) -> int:
    status = await client.status()
    if args.json:
        _out(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
    else:
        _out(format_status(status))
    return EXIT_OK


async def _health(client: Client, args: argparse.Namespace) -> int:
    health = await client.health()
    state = health.get("status")
    target = health.get("target")
    of = plural(target, "child", "children") if isinstance(target, int) else f"{target} children"
    _out(f"{state} ({health.get('ready')} of {of} ready)")
    return EXIT_OK if state == "ready" else EXIT_FAILED


CLIENT_COMMANDS: Final[dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]]] = {
    "status": _status,
    "health": _health,
    "submit": _submit,
    "resize": _resize,
    "reload": _reload,
}


# ==================================================================== stop


def stop(args: argparse.Namespace) -> int:
    """``qoper8 stop``: TERM the daemon named by its pidfile and wait (bounded) until it is
    gone. Exit 0 once it is; 1 when no daemon runs there or it is still running at the end."""
    try:
        settings = _daemon_settings(args)
    except ConfigError as exc:
        _err(f"qoper8 stop: {exc}")
        return EXIT_USAGE
    pidfile = args.pidfile or settings.get("pidfile")
    if not pidfile:
        _err("qoper8 stop: which daemon? give --pidfile PATH, or --config FILE with a pidfile")
        return EXIT_USAGE
    limit = args.timeout
    if limit is None:
        limit = float(settings.get("grace", DEFAULT_GRACE)) + STOP_MARGIN
    path = Path(pidfile)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it does not hold a pid"
        _err(f"qoper8 stop: no daemon to stop: cannot read pidfile {path}: {reason}")
        return EXIT_FAILED
    if not _is_qoper8(pid):
        _err(f"qoper8 stop: pidfile {path} names pid {pid}, which is not a running qoper8")
        return EXIT_FAILED
    try:
        gone = _term_and_wait(pid, limit)
    except ProcessLookupError:
        gone = True
    except PermissionError:
        _err(f"qoper8 stop: not allowed to signal pid {pid} (another user's daemon?)")
        return EXIT_FAILED
    if gone:
        _out(f"qoper8 stop: the daemon (pid {pid}) stopped")
        return EXIT_OK
    _err(
        f"qoper8 stop: sent TERM, but pid {pid} is still running after {limit:g}s (jobs still "
        f"finishing?); 'kill -INT {pid}' stops it at once"
    )
    return EXIT_FAILED


def _is_qoper8(pid: int) -> bool:
    """Whether ``pid`` runs qoper8: a stale pidfile's pid may belong to anything by now."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): all we can tell is that it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return b"qoper8" in cmdline


def _term_and_wait(pid: int, limit: float) -> bool:
    """Send TERM and wait up to ``limit`` seconds for the process to exit; return whether
    it did. A pidfd keeps the pid from naming another process between check and signal."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError) as exc:
        if isinstance(exc, ProcessLookupError):
            raise
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(STOP_POLL)
        return False
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(limit * 1000))
    finally:
        os.close(fd)
