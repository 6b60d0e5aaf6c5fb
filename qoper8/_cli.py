"""``qoper8``'s command line: argument parsing, named exit codes and the status table.

Kept thin on purpose: ``serve`` hands its settings to ``load_config`` and ``Daemon``; the
other commands are one ``Client`` call each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import __version__
from .errors import ConfigError, Qoper8Error, TransportError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._client import Client

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "main"]

# Exit codes of the client commands (status, submit, resize, reload). `serve` has its own,
# in _daemon (EXIT_CONFIG, EXIT_START_FAILED, ...).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the daemon answered with an error (JobFailed, QueueFull, ...)
EXIT_USAGE: Final = 2  # a bad argument (argparse uses 2 as well)
EXIT_UNREACHABLE: Final = 6  # the daemon could not be reached (TransportError)

# `serve` flags that map one to one onto a setting; their values go to pydantic as given,
# so a flag, a variable and a TOML key are all validated (and named) the same way.
_SETTING_FLAGS: Final[tuple[tuple[str, str, str], ...]] = (
    ("--worker", "REF", 'worker module, "pkg.mod:attr"'),
    ("--children", "N", "number of children (default: the number of CPUs)"),
    ("--host", "ADDR", "address to listen on (default 127.0.0.1; others need --token)"),
    ("--port", "PORT", "port to listen on (default 8765)"),
    ("--unix", "PATH", "listen on this Unix socket instead of host and port"),
    ("--pidfile", "PATH", "write the master's pid here"),
    ("--log-file", "PATH", "log here instead of stderr (USR1 reopens it)"),
    ("--log-level", "LEVEL", "DEBUG, INFO, WARNING or ERROR"),
    ("--token", "TOKEN", "require 'Authorization: Bearer TOKEN' on every request"),
    ("--timeout", "SECONDS", "default job deadline"),
    ("--max-queue", "N", "jobs that may wait for a child; more get 503 QueueFull"),
    ("--max-jobs-per-child", "N", "retire a child after this many jobs"),
    ("--max-memory-per-child", "BYTES", "retire a child above this resident memory"),
    ("--start-timeout", "SECONDS", "time a child gets to become ready"),
    ("--grace", "SECONDS", "TERM: time queued and running jobs get to finish (default 30)"),
    ("--max-body-bytes", "BYTES", "largest request body (default 10 MiB)"),
    ("--redis", "URL", "also consume actions from this Redis URL (Redis mode)"),
    ("--queue", "NAME", "the Redis queue to consume (with --redis)"),
    ("--redis-lease", "SECONDS", "a silent host's Redis jobs run elsewhere after this (30)"),
    ("--redis-max-retries", "N", "times an abandoned Redis job is run again (3)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qoper8",
        description="Run blocking Python handlers on a pool of persistent child processes.",
    )
    parser.add_argument("--version", action="version", version=f"qoper8 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon (HTTP/JSON API)")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file")
    for flag, metavar, help_text in _SETTING_FLAGS:
        serve.add_argument(flag, metavar=metavar, help=help_text, default=None)
    serve.add_argument(
        "--debug", action="store_true", default=None, help="send tracebacks in JobFailed errors"
    )

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            default=os.environ.get("QOPER8_URL") or None,
            help="the daemon: http://HOST:PORT or unix:PATH (default $QOPER8_URL or "
            "http://127.0.0.1:8765)",
        )
        p.add_argument("--token", default=os.environ.get("QOPER8_TOKEN") or None)

    status = sub.add_parser("status", help="children, queue and totals as a table")
    client_options(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    submit = sub.add_parser("submit", help="submit one action and print its result")
    submit.add_argument("action", help="the action as JSON, or - to read it from stdin")
    submit.add_argument("--timeout", type=float, default=None, help="job deadline (seconds)")
    client_options(submit)

    resize = sub.add_parser("resize", help="set the number of children (N, +N or -N)")
    resize.add_argument("children", help="N, or +N / -N to change it by N")
    client_options(resize)

    reload = sub.add_parser("reload", help="reload settings and worker code (as HUP)")
    client_options(reload)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``qoper8`` command; returns its exit code."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    commands: dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]] = {
        "status": _status,
        "submit": _submit,
        "resize": _resize,
        "reload": _reload,
    }
    return asyncio.run(_with_client(commands[args.command], args))


def _serve(args: argparse.Namespace) -> int:
    from ._daemon import EXIT_CONFIG, run_daemon
    from .config import load_config

    overrides: dict[str, Any] = {
        flag.removeprefix("--").replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _, _ in _SETTING_FLAGS
    }
    overrides["debug"] = args.debug

    def load() -> Any:
        return load_config(args.config, overrides=overrides)

    try:
        config = load()
    except ConfigError as exc:
        print(f"qoper8 serve: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    return run_daemon(config, reload_config=load)


async def _with_client(
    command: Callable[[Client, argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> int:
    from ._client import DEFAULT_URL, Client

    try:
        async with Client(args.url or DEFAULT_URL, token=args.token) as client:
            return await command(client, args)
    except TransportError as exc:
        _err(f"qoper8 {args.command}: {exc}")
        return EXIT_UNREACHABLE
    except Qoper8Error as exc:
        _err(f"qoper8 {args.command}: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except ValueError as exc:
        _err(f"qoper8 {args.command}: {exc}")
        return EXIT_USAGE


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


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
    kwargs = {} if args.timeout is None else {"timeout": args.timeout}
    result = await client.submit(action, **kwargs)
    _out(orjson.dumps(result).decode())
    return EXIT_OK


async def _resize(client: Client, args: argparse.Namespace) -> int:
    text = args.children.strip()
    try:
        number = int(text)
    except ValueError:
        _err(f"qoper8 resize: {text!r} is not N, +N or -N")
        return EXIT_USAGE
    if text.startswith(("+", "-")):
        size = await client.resize(delta=number)
    else:
        size = await client.resize(number)
    _out(f"children: {size}")
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


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value < 1:
        return f"{value * 1000:.1f}ms"
    return f"{value:.1f}s"


def format_status(status: dict[str, Any]) -> str:
    """``/v1/status`` as the readable table ``qoper8 status`` prints."""
    children = status.get("children") or []
    lines = [
        f"qoper8 {status.get('version', '?')}, master pid {status.get('pid')}, "
        f"worker {status.get('worker')}, up {_seconds(status.get('uptime'))}"
        + (", DRAINING" if status.get("draining") else ""),
        f"children: {len(children)} (target {status.get('target_size')}), "
        f"generation {status.get('generation')}",
        "",
    ]
    header = ("ID", "PID", "GEN", "STATE", "JOBS", "AGE", "CURRENT JOB", "RSS")
    rows = [header]
    for c in children:
        rss = c.get("memory_rss")
        rows.append(
            (
                str(c.get("id")),
                str(c.get("pid")),
                str(c.get("generation")),
                str(c.get("state")),
                str(c.get("jobs_done")),
                _seconds(c.get("age")),
                _seconds(c.get("current_job_age")),
                f"{rss / 2**20:.1f}MiB" if isinstance(rss, int) else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    wait = status.get("queue_wait") or {}
    run = status.get("run_time") or {}
    lines += [
        "",
        f"queue: {status.get('queue_length')} waiting, {status.get('running')} running",
        "totals: "
        + ", ".join(
            f"{name.replace('_', ' ')} {status.get(name)}"
            for name in (
                "submitted",
                "completed",
                "failed",
                "invalid",
                "timed_out",
                "died",
                "cancelled",
                "rejected",
                "recycled",
            )
        ),
        f"queue wait: p50 {_seconds(wait.get('p50'))}, p99 {_seconds(wait.get('p99'))}; "
        f"run time: p50 {_seconds(run.get('p50'))}, p99 {_seconds(run.get('p99'))}",
    ]
    return "\n".join(lines)
