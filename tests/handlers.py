"""Handlers for the test suite: one per behaviour the fault matrix needs."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from pydantic import BaseModel

import qoper8

worker = qoper8.Worker()


@worker.handler("echo")
def echo(value: Any = None) -> Any:
    return value


@worker.handler("add")
def add(a: int, b: int) -> int:
    return a + b
