"""A qoper8 host with actors for the Redis actor tests: one Pool of ``tests.actor_handlers``
and one RedisConsumer (which hosts the actors) in its own process.

``python -m tests.redis.actor_host URL QUEUE LEASE [MAX_ACTORS]`` prints ``READY <pid>`` once
its children are up, and stops gracefully on SIGTERM (its actors are handed back).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import qoper8
from qoper8._redis import RedisConsumer

ACTORS = "tests.actor_handlers:worker"


async def main(url: str, queue: str, lease: float, max_actors: int) -> None:
    async with qoper8.Pool(ACTORS, children=1, max_actors=max_actors) as pool:
        consumer = RedisConsumer(pool, url=url, queue=queue, lease=lease, grace=2.0)
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
    asyncio.run(main(args[0], args[1], float(args[2]), int(args[3]) if len(args) > 3 else 8))
