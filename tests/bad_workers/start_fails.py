"""A worker module whose start hook raises."""

import qoper8

worker = qoper8.Worker()


@worker.on_start
def connect() -> None:
    raise ConnectionError("database is down")
