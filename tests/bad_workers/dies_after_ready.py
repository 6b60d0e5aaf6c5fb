"""A worker module whose children report ready, then die idle a moment later."""

import os
import threading

import qoper8

worker = qoper8.Worker()


@worker.on_start
def arm() -> None:
    threading.Timer(0.2, os._exit, (7,)).start()


@worker.handler("echo")
def echo(value: int) -> int:
    return value
