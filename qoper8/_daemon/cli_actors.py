"""The message and actor commands of ``qoper8``: ``broadcast``, ``actors`` and ``actor``
(``call``, ``create``, ``destroy``, ``events``). Each is one ``Client`` call plus its output
and exit code; ``cli`` parses, ``cli_commands`` finds the daemon and runs them.

Output: a table for people (``--json`` for scripts) and one JSON value per line where a
script reads a stream (``actor events``, ``actor call``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final

import orjson

from .cli_commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Sequence

    from .._client import Client

__all__ = ["MESSAGE_COMMANDS", "add_message_commands"]


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()  # a reader of `actor events` sees each line as it comes


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    every = [header, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in every
    )


def _json_object(raw: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object argument (``-`` reads stdin); None when not given.

    Raises:
        ValueError: not JSON, or not an object (the CLI exits 2).
    """
    if raw is None:
        return None
    text = sys.stdin.read() if raw == "-" else raw
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def add_message_commands(
    sub: Any,
    client: Callable[[str, str], argparse.ArgumentParser],
    client_options: Callable[[argparse.ArgumentParser], None],
    epilog: str,
) -> None:
    """Add ``broadcast``, ``actors`` and ``actor`` to the ``qoper8`` parser's commands."""
    b = client("broadcast", "send a message to every child's on_message function")
    b.add_argument("topic", help="the topic (a dotted name)")
    b.add_argument("payload", nargs="?", help="the function's arguments as a JSON object, or -")
    b.add_argument("--sticky", action="store_true", help="give it to children started later")
    b.add_argument("--timeout", type=float, default=None, help="seconds to wait for answers")
    b.add_argument("--json", action="store_true", help="print the raw JSON")

    a = client("actors", "the named actors as a table")
    a.add_argument("--json", action="store_true", help="print the raw JSON")

    actor = sub.add_parser("actor", help="create, call, destroy an actor, or follow its events")
    verbs = actor.add_subparsers(dest="actor_command", required=True, metavar="ACTION")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, help=help_text, epilog=epilog)
        client_options(p)
        return p

    call = verb("call", "call an actor's method and print its result")
    call.add_argument("name")
    call.add_argument("method")
    call.add_argument("args", nargs="?", help="its arguments as a JSON object, or -")
    call.add_argument("--timeout", type=float, default=None, help="the call's deadline")
    create = verb("create", "create an actor and print its info")
    create.add_argument("type", help="an actor type the worker module registered")
    create.add_argument("name")
    create.add_argument("args", nargs="?", help="its __init__'s arguments as a JSON object")
    create.add_argument(
        "--if-exists", choices=("error", "get"), default="error", help="default: error"
    )
    create.add_argument("--max-restarts", type=int, default=0, help="default: 0")
    destroy = verb("destroy", "destroy an actor (its queued calls fail)")
    destroy.add_argument("name")
    events = verb("events", "print an actor's events as they come (one JSON line each)")
    events.add_argument("name")


async def _broadcast(client: Client, args: argparse.Namespace) -> int:
    payload = _json_object(args.payload, "the payload")
    kwargs: dict[str, Any] = {"sticky": args.sticky}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    report = await client.broadcast(args.topic, payload, **kwargs)
    if args.json:
        from ..errors import error_to_dict

        entries = [
            {"child": r.child, "pid": r.pid, "value": r.value}
            if r.error is None
            else {"child": r.child, "pid": r.pid, "error": error_to_dict(r.error)}
            for r in report.replies
        ]
        _out(_dumps({"topic": report.topic, "complete": report.complete, "replies": entries}))
    else:
        rows = [
            (
                str(r.child),
                str(r.pid),
                _dumps(r.value) if r.error is None else f"{type(r.error).__name__}: {r.error}",
            )
            for r in report.replies
        ]
        _out(_table(("CHILD", "PID", "REPLY"), rows))
    return EXIT_OK if report.complete else EXIT_FAILED


async def _actors(client: Client, args: argparse.Namespace) -> int:
    infos = await client.actors.list()
    if args.json:
        from dataclasses import asdict

        _out(_dumps([asdict(i) for i in infos]))
        return EXIT_OK
    header = ("NAME", "TYPE", "STATE", "PID", "RESTARTS", "QUEUED", "CALLS")
    rows = [
        (
            i.name,
            i.type,
            i.state,
            "-" if i.pid is None else str(i.pid),
            f"{i.restarts}/{i.max_restarts}",
            str(i.queued),
            str(i.calls),
        )
        for i in infos
    ]
    _out(_table(header, rows) if rows else "no actors")
    return EXIT_OK


async def _actor(client: Client, args: argparse.Namespace) -> int:
    command = args.actor_command
    if command == "call":
        call_args = _json_object(args.args, "the arguments")
        kwargs = {} if args.timeout is None else {"timeout": args.timeout}
        ref = await client.actors.get(args.name)
        _out(_dumps(await ref.call(args.method, call_args, **kwargs)))
    elif command == "create":
        init = _json_object(args.args, "the arguments")
        if args.max_restarts < 0:
            _err("qoper8 actor create: --max-restarts must be 0 or more")
            return EXIT_USAGE
        ref = await client.actors.create(
            args.type,
            args.name,
            args=init,
            if_exists=args.if_exists,
            max_restarts=args.max_restarts,
        )
        info = await ref.info()
        _out(f"actor {info.name!r} ({info.type}): {info.state}, pid {info.pid}")
    elif command == "destroy":
        await client.actors.destroy(args.name)
        _out(f"actor {args.name!r} destroyed")
    else:
        ref = await client.actors.get(args.name)
        async with ref.events() as events:
            _err(f"qoper8 actor events: following {args.name!r} (Ctrl-C to stop)")
            async for event in events:
                line = {"event": event.event, "payload": event.payload}
                if event.missed:
                    line["missed"] = event.missed
                _out(_dumps(line))
        _err(f"qoper8 actor events: the stream ended ({events.ended})")
    return EXIT_OK


MESSAGE_COMMANDS: Final[dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]]] = {
    "broadcast": _broadcast,
    "actors": _actors,
    "actor": _actor,
}
