"""A worker module whose stop hook leaves a mark the test can see."""

import os

import qoper8

worker = qoper8.Worker()


@worker.on_stop
def close() -> None:
    path = os.environ.get("TEST_QOPER8_STOP_DIR")
    if path:
        with open(os.path.join(path, f"stopped-{os.getpid()}"), "w") as f:
            f.write("bye")


@worker.handler("pid")
def pid() -> int:
    return os.getpid()
