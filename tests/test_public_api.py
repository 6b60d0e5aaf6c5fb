"""The public surface: complete __all__, and a child that never loads the master's machinery."""

from __future__ import annotations

import subprocess
import sys

import qoper8


def test_all_names_resolve() -> None:
    for name in qoper8.__all__:
        assert getattr(qoper8, name) is not None, name


def test_errors_form_one_tree() -> None:
    for name in (
        "ConfigError",
        "PoolClosed",
        "QueueFull",
        "InvalidAction",
        "TransportError",
        "JobError",
        "StartFailed",
    ):
        assert issubclass(getattr(qoper8, name), qoper8.Qoper8Error)
    for name in ("JobFailed", "JobTimeout", "ChildDied"):
        assert issubclass(getattr(qoper8, name), qoper8.JobError)


def test_a_child_never_loads_the_pool_the_daemon_or_redis() -> None:
    code = (
        "import sys, qoper8._engine.child_main, tests.handlers;"
        "bad = [m for m in sys.modules if m.startswith("
        "('qoper8._engine.pool', 'qoper8._daemon', 'redis', 'rq', 'asyncio', 'qoper8._cli'))];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
