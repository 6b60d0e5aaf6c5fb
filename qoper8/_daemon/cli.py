"""``qoper8``'s command line: argument parsing, help and the console-script entry point.

Kept thin on purpose: ``serve`` hands its settings to ``load_config`` and ``Daemon``; the
other commands live in ``cli_commands`` (one ``Client`` call each, or a signal for
``stop``); the status table in ``cli_status``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Final

from .. import __version__
from .._text import did_you_mean
from ..config import (
    DEFAULT_GRACE,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PORT,
    ENV_PREFIX,
    PoolConfig,
    ServeConfig,
)
from ..errors import ConfigError
from .cli_actors import MESSAGE_COMMANDS, add_message_commands
from .cli_commands import (
    CLIENT_COMMANDS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    STOP_MARGIN,
    run_client_command,
    stop,
)
from .cli_status import format_status

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "console_main",
    "format_status",
    "main",
]


_FIELDS: Final = {**PoolConfig.model_fields, **ServeConfig.model_fields}


def _default(name: str, none: str = "none") -> str:
    """A setting's default as ``--help`` shows it, read from the models so it cannot lie."""
    value = _FIELDS[name].get_default(call_default_factory=True)
    return none if value is None else str(value)


# `serve` flags that map one to one onto a setting: (flags, setting, metavar, help). Their
# values go to pydantic as given, so a flag, a variable and a TOML key are all validated
# (and named) the same way.
_SETTING_FLAGS: Final[tuple[tuple[tuple[str, ...], str, str, str], ...]] = (
    (("--worker",), "worker", "REF", 'worker module, "pkg.mod:attr" (required: here, '
     f"{ENV_PREFIX}WORKER or the config file)"),
    (("-w", "--children", "--workers"), "children", "N",
     f"number of children (default: the number of CPUs, {_default('children')} here), or "
     "MIN:MAX to autoscale between the two"),
    (("--idle-timeout",), "idle_timeout", "SECONDS",
     f"autoscaling: an idle child retires after this (default: {_default('idle_timeout')})"),
    (("-b", "--bind"), "bind", "ADDR",
     "HOST:PORT, [IPV6]:PORT, :PORT or unix:PATH (instead of --host/--port/--unix)"),
    (("--host",), "host", "ADDR",
     f"address to listen on (default: {DEFAULT_HOST}; any other needs --token)"),
    (("--port",), "port", "PORT", f"port to listen on (default: {DEFAULT_PORT})"),
    (("--unix",), "unix", "PATH", "listen on this Unix socket instead of host and port"),
    (("--pidfile",), "pidfile", "PATH", "write the master's pid here (for qoper8 stop)"),
    (("--log-file",), "log_file", "PATH", "log here instead of stderr (USR1 reopens it)"),
    (("--log-level",), "log_level", "LEVEL",
     f"DEBUG, INFO, WARNING or ERROR (default: {_default('log_level')})"),
    (("--log-format",), "log_format", "FORMAT",
     "text, or json: one JSON object per line (default: text)"),
    (("--token",), "token", "TOKEN",
     f"require 'Authorization: Bearer TOKEN' (shows in ps: prefer {ENV_PREFIX}TOKEN)"),
    (("--timeout",), "timeout", "SECONDS", "default job deadline (default: none)"),
    (("--max-queue",), "max_queue", "N",
     "jobs that may wait for a child; more get 503 QueueFull (default: none)"),
    (("--max-jobs-per-child",), "max_jobs_per_child", "N",
     "retire a child after this many jobs (default: none)"),
    (("--max-memory-per-child",), "max_memory_per_child", "SIZE",
     "retire a child above this resident memory, e.g. 512M (default: none)"),
    (("--max-message-bytes",), "max_message_bytes", "SIZE",
     f"largest action or result (default: {DEFAULT_MAX_MESSAGE_BYTES // 2**20}M)"),
    (("--start-timeout",), "start_timeout", "SECONDS",
     f"time a child gets to become ready (default: {_default('start_timeout')})"),
    (("--start-method",), "start_method", "METHOD",
     "forkserver: fork children from one interpreter that imported the worker module once; "
     "spawn: a fresh interpreter per child, for a worker module not fork-safe at import "
     f"(default: {_default('start_method')})"),
    (("--max-start-failures",), "max_start_failures", "N",
     "after N children in a row fail to start, give up and exit 3 (default: "
     f"{_default('max_start_failures', 'never: keep retrying')})"),
    (("--grace",), "grace", "SECONDS",
     f"TERM: time queued and running jobs get to finish (default: {DEFAULT_GRACE:g})"),
    (("--max-body-bytes",), "max_body_bytes", "SIZE",
     f"largest request body, e.g. 1M (default: {DEFAULT_MAX_BODY_BYTES // 2**20}M)"),
    (("--redis",), "redis", "URL", "also consume actions from this Redis URL (Redis mode)"),
    (("--queue",), "queue", "NAME", f"the Redis queue to consume (default: {_default('queue')})"),
    (("--redis-lease",), "redis_lease", "SECONDS",
     f"a silent host's Redis jobs run elsewhere after this (default: {_default('redis_lease')})"),
    (("--redis-max-retries",), "redis_max_retries", "N",
     f"times an abandoned Redis job runs again (default: {_default('redis_max_retries')})"),
)  # fmt: skip

# `serve` switches: (flag, setting, help).
_SWITCHES: Final = (
    ("--debug", "debug", "JobFailed answers carry the child's traceback; the log goes down "
     "to DEBUG (tracebacks of failed jobs)"),
    ("--access-log", "access_log", "log one line per HTTP request"),
    ("--public-health", "public_health", "serve /v1/health and /metrics without the token"),
)  # fmt: skip

# `serve` flags of their own shape: (flags, setting); their options are in _parser().
_OTHER_FLAGS: Final = (
    (("--fd",), "fd"),
    (("--no-dashboard",), "dashboard"),
    (("--role",), "roles"),
)

# Settings that only the TOML file and the environment set, named in `serve --help`.
_NO_FLAG: Final = ", ".join(
    sorted(set(_FIELDS) - {"pool"} - {f[1] for f in (*_SETTING_FLAGS, *_SWITCHES, *_OTHER_FLAGS)})
)

_SERVE_EPILOG: Final = f"""\
settings:
  Every setting comes from, in rising precedence: the TOML file (-c; top-level keys or a
  [qoper8] table), a {ENV_PREFIX}<SETTING> environment variable, then a flag. The variable is
  the setting's name in capitals: {ENV_PREFIX}WORKER, {ENV_PREFIX}CHILDREN, {ENV_PREFIX}BIND,
  {ENV_PREFIX}TOKEN, {ENV_PREFIX}MAX_BODY_BYTES, ... Settings with no flag (file or variable
  only): {_NO_FLAG}. Sizes take a unit: 64KiB, 512M, 2G (K, M, G and
  KiB, MiB, GiB are powers of 1024; KB, MB, GB of 1000).

roles:
  Several worker modules, each with its own children, queue and settings: --role flags,
  {ENV_PREFIX}ROLES="users=workers.users:worker:8 reports=workers.reports:worker:0:2", or
  [roles.NAME] tables in the file (worker = "...", any pool setting, queue = "..." for
  --redis). Top-level pool settings are every role's defaults. TTIN and TTOU act on the
  first role; WINCH, HUP and TERM on all of them.

signals:
  TERM        stop taking jobs, let queued and running ones finish (up to --grace), exit
  INT, QUIT   stop at once: running jobs fail with PoolClosed
  HUP         reload the settings and start a new generation of children (no job lost)
  TTIN, TTOU  one child more, one child fewer, of the first role (after WINCH, TTIN
              restores every role's size)
  WINCH       retire every child gracefully, keep the master (jobs wait; health: paused)
  USR1        reopen the log file
  USR2        upgrade: start the installed qoper8 on the same sockets, hand over, exit

exit codes:
  0  stopped by a signal        3  the worker module failed to start
  1  crashed (see the log)      4  cannot listen on the address
  2  a bad setting              5  the pidfile names a running process
"""

_CLIENT_EPILOG: Final = """\
exit codes: 0 done, 1 the daemon answered an error (or refused the token), 2 bad argument,
6 the daemon could not be reached."""


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="qoper8",
        description="Run blocking Python handlers on a pool of persistent child processes.",
        epilog="Run 'qoper8 COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"qoper8 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    serve = sub.add_parser(
        "serve", help="run the daemon (HTTP/JSON API)", epilog=_SERVE_EPILOG, formatter_class=raw
    )
    serve.add_argument("-c", "--config", metavar="FILE", help="TOML settings file")
    for flags, setting, metavar, help_text in _SETTING_FLAGS:
        serve.add_argument(*flags, dest=setting, metavar=metavar, help=help_text, default=None)
    for flag, setting, help_text in _SWITCHES:
        serve.add_argument(flag, dest=setting, action="store_true", default=None, help=help_text)
    serve.add_argument(
        "--fd",
        dest="fd",
        metavar="N",
        type=int,
        action="append",
        default=None,
        help="serve on this inherited listening socket instead of binding (repeatable; "
        "systemd's LISTEN_FDS is found without it)",
    )
    serve.add_argument(
        "--role",
        dest="roles",
        metavar="NAME=REF[:N|:MIN:MAX]",
        action="append",
        default=None,
        help="one role of several worker modules, e.g. users=workers.users:worker:8 or "
        "reports=workers.reports:worker:0:2 (repeatable, instead of --worker; the other pool "
        "flags are every role's defaults; replaces the file's [roles.NAME] tables)",
    )
    serve.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_const",
        const=False,
        default=None,
        help="no dashboard page at / (its data, /v1/events, stays in the API)",
    )

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            help=f"the daemon: http://HOST:PORT or unix:PATH (default: from --config, else "
            f"${ENV_PREFIX}URL, else http://127.0.0.1:8765)",
        )
        p.add_argument("--token", help=f"the daemon's token (default: ${ENV_PREFIX}TOKEN)")
        p.add_argument(
            "-c", "--config", metavar="FILE", help="the daemon's TOML file: its address and token"
        )

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, epilog=_CLIENT_EPILOG)
        client_options(p)
        return p

    status = client("status", "children, queue and totals as a table")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    health = sub.add_parser(
        "health",
        help="exit 0 if the daemon is ready, 1 if not (or unreachable)",
        epilog="exit codes: 0 ready, 1 starting, draining, degraded or unreachable",
    )
    client_options(health)
    submit = client("submit", "submit one action and print its result")
    submit.add_argument("action", help="the action as JSON, or - to read it from stdin")
    submit.add_argument("--timeout", type=float, default=None, help="job deadline (seconds)")
    submit.add_argument(
        "--role",
        default=None,
        help="the role to run it (a daemon of several roles finds it from the action's type; "
        "a type several roles handle needs it)",
    )
    submit.add_argument(
        "--stream",
        action="store_true",
        help="print each message the handler sends as a JSON line as it comes (progress on "
        "stderr), then the result",
    )
    resize = client("resize", "set a role's number of children (N, +N, -N) or range (MIN:MAX)")
    resize.usage = "qoper8 resize [-h] [--force] [--url URL] [--token TOKEN] [-c FILE] [ROLE] SIZE"
    resize.add_argument(
        "children",
        metavar="ROLE",
        help="the role to resize (needed when the daemon has several; else SIZE alone)",
    )
    resize.add_argument(
        "size",
        nargs="?",
        metavar="SIZE",
        help="N; +N / -N to change it by N (an autoscaled role: its least, as TTIN and TTOU); "
        "or MIN:MAX to autoscale between the two",
    )
    resize.add_argument(
        "--force", action="store_true", help="allow more than 4 children per CPU of the daemon"
    )
    client("reload", "reload settings and worker code (as HUP)")
    add_message_commands(sub, client, client_options, _CLIENT_EPILOG)

    stop_cmd = sub.add_parser(
        "stop",
        help="TERM the daemon named by its pidfile and wait until it is gone",
        epilog="exit codes: 0 stopped, 1 no daemon there or still running, 2 bad argument",
    )
    stop_cmd.add_argument("--pidfile", metavar="PATH", help="the daemon's pidfile")
    stop_cmd.add_argument(
        "-c", "--config", metavar="FILE", help="the daemon's TOML file: its pidfile and grace"
    )
    stop_cmd.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"how long to wait (default: the daemon's grace + {STOP_MARGIN:g}s)",
    )
    return parser, dict(sub.choices)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``qoper8`` command; returns its exit code.

    With no arguments it prints the help to stderr and returns 2 (a usage error, as argparse
    and git treat a missing command).
    """
    parser, commands = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = commands[args.command]
        options = [o for o in command._option_string_actions if o.startswith("--")]
        hints = "".join(did_you_mean(a.split("=")[0], options) for a in extra if a[:2] == "--")
        command.error(f"unrecognized arguments: {' '.join(extra)}{hints}")
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "stop":
        return stop(args)
    run = {**CLIENT_COMMANDS, **MESSAGE_COMMANDS}[args.command]
    return run_client_command(args, run)


def console_main() -> None:
    """The ``qoper8`` console script: resolve worker modules from the working directory
    first, as ``python -m qoper8`` does (a script's ``sys.path[0]`` is its ``bin/``, so a
    user's ``workers/`` package would otherwise lose to an installed one). Children get the
    master's ``sys.path``."""
    if not sys.flags.safe_path:
        cwd = os.getcwd()
        if sys.path[:1] != [cwd]:
            sys.path.insert(0, cwd)
    sys.exit(main())


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    from .._config_sources import load_config
    from .daemon import EXIT_CONFIG, run_daemon

    overrides: dict[str, Any] = {
        setting: getattr(args, setting) for _, setting, _, _ in _SETTING_FLAGS
    }
    overrides.update({setting: getattr(args, setting) for _, setting, _ in _SWITCHES})
    overrides.update({setting: getattr(args, setting) for _, setting in _OTHER_FLAGS})

    def load() -> Any:
        return load_config(args.config, overrides=overrides)

    try:
        config = load()
    except ConfigError as exc:
        print(f"qoper8 serve: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    # USR2 starts the new master with the same arguments.
    return run_daemon(config, reload_config=load, argv=argv)
