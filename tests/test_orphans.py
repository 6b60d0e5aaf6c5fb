"""Children die with their master: SIGKILL the master and every child is gone within
seconds, even one blocked inside a handler."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from tests.conftest import pid_alive, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASTER = textwrap.dedent(
    """
    import asyncio, sys
    import qoper8

    async def main() -> None:
        async with qoper8.Pool("tests.handlers:worker", children=2) as pool:
            hung = asyncio.create_task(pool.submit({"type": "hang"}))
            while pool.statistics().running < 1:
                await asyncio.sleep(0.01)
            print(" ".join(str(c.pid) for c in pool.statistics().children), flush=True)
            await hung

    asyncio.run(main())
    """
)


async def test_children_die_when_the_master_is_killed() -> None:
    master = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MASTER,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert master.stdout is not None
        line = await asyncio.wait_for(master.stdout.readline(), 20)
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
        assert all(pid_alive(p) for p in pids)
        master.send_signal(signal.SIGKILL)
        await master.wait()
        await wait_until(
            lambda: not any(pid_alive(p) for p in pids),
            timeout=3.0,
            what="every child (one blocked in a handler) to exit after its master died",
        )
    finally:
        if master.returncode is None:
            master.kill()
            await master.wait()
