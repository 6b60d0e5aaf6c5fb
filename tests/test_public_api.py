"""The public surface: complete __all__, and a child that never loads the master's machinery."""

from __future__ import annotations

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
