"""A worker module whose start hook never returns (a database that never answers)."""

import signal

import qoper8

worker = qoper8.Worker()


@worker.on_start
def connect() -> None:
    signal.pause()
