"""A qoper8 host for the Redis tests: one Pool and one RedisConsumer in its own process.

``python -m tests.redis.host URL QUEUE [CHILDREN] [LEASE]`` prints ``READY <pid>`` once its
children are up, and stops gracefully on SIGTERM (the consumer hands back what it cannot
finish). Until ``qoper8 serve --redis`` exists, this is how tests run several hosts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import qoper8
from qoper8._redis import RedisConsumer

HANDLERS = "tests.redis.redis_handlers:worker"


async def main(url: str, queue: str, children: int, lease: float) -> None:
    async with qoper8.Pool(HANDLERS, children=children) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue, lease=lease, grace=5.0)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        runner = asyncio.create_task(consumer.run())
        sys.stdout.write(f"READY {os.getpid()}\n")
        sys.stdout.flush()
        await stop.wait()
        await consumer.stop()
        await runner


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0],
            args[1],
            int(args[2]) if len(args) > 2 else 2,
            float(args[3]) if len(args) > 3 else 30.0,
        )
    )
