"""The roots of qoper8's errors, kept apart so that ``errors`` (the tree, drawn there) stays
one screen: the base class, the entry of a refused input, the remote traceback's carrier, and
the words for how a process ended. ``errors`` re-exports all of them; import them from there.
"""

from __future__ import annotations

import signal as _signal
from typing import TypedDict

__all__ = ["ErrorEntry", "Qoper8Error", "RemoteTraceback", "describe_exit"]


class ErrorEntry(TypedDict):
    """One reason an input was refused, in pydantic's shape: where (``loc``, the path of
    field names and list indexes, ``[]`` for the whole input), what (``msg``) and a stable
    machine-readable kind (``type``, e.g. ``"missing"``, ``"int_parsing"``)."""

    loc: list[str | int]
    msg: str
    type: str


class Qoper8Error(Exception):
    """Base of every error qoper8 raises on purpose."""


class RemoteTraceback(Exception):
    """Carries a child's formatted traceback text; set as ``__cause__`` of ``JobFailed`` and
    ``StartFailed`` so that the remote frames print under the local ones."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


def describe_exit(exitcode: int | None, signum: int | None) -> str:
    """Say how a process ended in words an operator understands."""
    if signum is not None:
        try:
            name = _signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (out of memory?)" if signum == _signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    if exitcode is not None:
        return f"exited with code {exitcode}"
    return "closed its channel"


# They are public as ``qoper8.errors.*`` (where the tree is drawn): that is the name they give
# in remote_types, reprs and pickles.
for _cls in (Qoper8Error, RemoteTraceback):
    _cls.__module__ = "qoper8.errors"
