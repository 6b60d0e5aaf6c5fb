"""``Pool.run`` (issue 9, item 9): functions of the user's own script run in a child as with
multiprocessing's spawn, a REPL's are refused with a clear message, and a call has a
deadline of its own."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qoper8
from tests import handlers
from tests.conftest import HANDLERS, new_fifo, release, wait_until

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import asyncio
import qoper8


def square(x):
    return x * x


class Boom(Exception):
    pass


def boom():
    raise Boom("from the main script")


async def main():
    async with qoper8.Pool("tests.handlers:worker", children=1) as pool:
        print(await pool.run(square, 7))
        try:
            await pool.run(boom)
        except qoper8.JobFailed as exc:
            print(type(exc.remote_exception).__name__, exc.remote_message)
        print(await pool.run(square, 8))


if __name__ == "__main__":
    asyncio.run(main())
"""


def _run_script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_functions_of_the_main_script_run_in_a_child(tmp_path: Path) -> None:
    script = tmp_path / "myscript.py"
    script.write_text(SCRIPT)
    done = _run_script(script, str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["49", "Boom from the main script", "64"]


def test_a_main_script_that_starts_a_pool_unguarded_gets_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        SCRIPT.replace('if __name__ == "__main__":\n    asyncio.run(main())', "")
        + textwrap.dedent(
            """
            async def unguarded():
                async with qoper8.Pool("tests.handlers:worker", children=1) as pool:
                    try:
                        await pool.run(square, 2)
                    except qoper8.JobFailed as exc:
                        print("refused:", exc.remote_message)

            asyncio.run(unguarded())
            """
        )
    )
    done = _run_script(script, str(script))
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    assert "if __name__ == '__main__':" in done.stdout


def test_a_function_from_an_interactive_session_is_refused_at_call_time() -> None:
    code = textwrap.dedent(
        """
        import asyncio, qoper8
        def square(x):
            return x * x
        async def main():
            async with qoper8.Pool("tests.handlers:worker", children=1) as pool:
                try:
                    await pool.run(square, 3)
                except qoper8.InvalidAction as exc:
                    print("InvalidAction:", exc)
        asyncio.run(main())
        """
    )
    done = _run_script(ROOT, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("InvalidAction:")
    assert "move it into a module" in done.stdout


async def test_run_has_a_per_call_deadline(pool: qoper8.Pool, tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "gate")
    before = {c.pid for c in pool.statistics().children}
    with pytest.raises(qoper8.JobTimeout):
        await pool.run(handlers.wait_on, fifo, timeout=0.2)
    assert await pool.run(handlers.square, 4, timeout=5) == 16
    assert pool.statistics().timed_out == 1
    await wait_until(
        lambda: len(before & {c.pid for c in pool.statistics().children}) == 1,
        what="the timed-out child replaced",
    )
    with pytest.raises(qoper8.InvalidAction):
        await pool.run(handlers.square, 4, timeout=0)


async def test_run_timeout_never_reaches_the_function(pool: qoper8.Pool, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"functools\.partial"):
        await pool.run(handlers.takes_timeout, 2, timeout=5)
    assert await pool.run(functools.partial(handlers.takes_timeout, timeout=3.0), 2) == 6.0
    bound = functools.partial(handlers.takes_timeout, timeout=3.0)
    assert await pool.run(bound, 2, timeout=5) == 6.0
    fifo = new_fifo(tmp_path, "late")
    task = pool.run(handlers.wait_on, fifo, timeout=30)
    await release_later(fifo, task)


async def release_later(fifo: str, call: object) -> None:
    import asyncio

    assert asyncio.iscoroutine(call)
    task = asyncio.ensure_future(call)
    await release(fifo)
    assert await task == "go"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True])
async def test_a_bad_timeout_is_refused_before_anything_runs(
    pool: qoper8.Pool, timeout: object
) -> None:
    with pytest.raises(qoper8.InvalidAction, match="timeout"):
        await pool.submit({"type": "echo"}, timeout=timeout)  # type: ignore[call-overload]
    assert pool.statistics().submitted == 0


@pytest.mark.parametrize("size", [0, -1, 1025, 2.5, True])
async def test_resize_is_bounded_like_children(pool: qoper8.Pool, size: object) -> None:
    with pytest.raises(qoper8.ConfigError, match="1024"):
        await pool.resize(size)  # type: ignore[arg-type]
    assert pool.size == 2


async def test_jobs_submitted_while_the_pool_starts_run_once_a_child_is_ready() -> None:
    import asyncio

    pool = qoper8.Pool(HANDLERS, children=1)
    starting = asyncio.ensure_future(pool.start())
    await asyncio.sleep(0)  # the start has begun: the pool is starting
    result = asyncio.ensure_future(pool.submit({"type": "echo", "value": "early"}))
    await starting
    try:
        assert await result == "early"
    finally:
        await pool.aclose()


async def test_jobs_submitted_while_a_start_fails_get_start_failed() -> None:
    import asyncio

    pool = qoper8.Pool("tests.bad_workers.start_fails:worker", children=1)
    starting = asyncio.ensure_future(pool.start())
    await asyncio.sleep(0)
    early = asyncio.ensure_future(pool.submit({"type": "echo"}))
    with pytest.raises(qoper8.StartFailed):
        await starting
    with pytest.raises(qoper8.StartFailed, match="database is down"):
        await early
