"""Start-up by a fork server: each guarantee of a spawned child holds for a forked one.

Worker modules of these tests are written into ``tmp_path`` (on ``sys.path``, which children
get from the master), so that a test can change one (a reload's new code) or make one unsafe
to fork (threads or sockets at import).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

import qoper8
from qoper8._config_sources import load_config
from qoper8._daemon.cli import _SETTING_FLAGS, _parser
from tests.conftest import HANDLERS, new_fifo, pid_alive, release, wait_until

if TYPE_CHECKING:
    from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = 20.0


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def _pids(pool: qoper8.Pool) -> list[int]:
    return [c.pid for c in pool.statistics().children if c.pid is not None]


def _server(pool: qoper8.Pool) -> int:
    """The fork server of the pool's children, checking that one forked them all."""
    (server,) = {_parent(pid) for pid in _pids(pool)}
    assert server != os.getpid(), "spawned by the master, not forked by a fork server"
    return server


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    """Write worker module ``name`` into ``tmp_path`` (put on ``sys.path``); its reference."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:worker"


async def test_children_are_forked_by_one_fork_server_and_run_on_start_themselves() -> None:
    async with asyncio.timeout(GUARD), qoper8.Pool(HANDLERS, children=2) as pool:
        pids = _pids(pool)
        server = _server(pool)
        assert _parent(server) == os.getpid()
        assert "qoper8._engine.fork_server_main" in _cmdline(server)
        # on_start ran once in each child, never in the server (a child would inherit it).
        assert [await pool.submit({"type": "start_count"}) for _ in pids] == [1, 1]
        # Each child has a process group and session of its own, as a spawned one.
        assert all(os.getpgid(pid) == pid and os.getsid(pid) == pid for pid in pids)
    await wait_until(lambda: not pid_alive(server), what="the fork server to exit with the pool")


async def test_spawn_start_method_starts_fresh_interpreters() -> None:
    async with asyncio.timeout(GUARD), qoper8.Pool(HANDLERS, children=1, start_method="spawn") as p:
        (pid,) = _pids(p)
        assert _parent(pid) == os.getpid()
        assert "qoper8._engine.child_main" in _cmdline(pid)
        assert await p.submit({"type": "add", "a": 1, "b": 2}) == 3


async def test_exit_statuses_come_through_the_fork_server() -> None:
    async with asyncio.timeout(GUARD), qoper8.Pool(HANDLERS, children=1) as pool:
        _server(pool)
        with pytest.raises(qoper8.ChildDied) as died:
            await pool.submit({"type": "exit_hard", "code": 7})
        assert (died.value.exitcode, died.value.signal) == (7, None)
        with pytest.raises(qoper8.ChildDied) as killed:
            await pool.submit({"type": "kill_self"})
        assert (killed.value.exitcode, killed.value.signal) == (None, signal.SIGKILL)
        assert await pool.submit({"type": "add", "a": 2, "b": 2}) == 4


async def test_a_sigkilled_idle_child_is_replaced_by_a_new_fork() -> None:
    async with asyncio.timeout(GUARD), qoper8.Pool(HANDLERS, children=1) as pool:
        (old,) = _pids(pool)
        server = _server(pool)
        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: old not in _pids(pool) and len(_pids(pool)) == 1)
        (new,) = _pids(pool)
        assert _parent(new) == server
        assert await pool.submit({"type": "pid"}) == new


async def test_children_die_with_their_fork_server_which_is_replaced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with asyncio.timeout(GUARD), qoper8.Pool(HANDLERS, children=2) as pool:
        old = _pids(pool)
        server = _server(pool)
        hung = asyncio.create_task(pool.submit({"type": "hang"}))
        await wait_until(lambda: pool.statistics().running == 1)
        os.kill(server, signal.SIGKILL)
        with pytest.raises(qoper8.ChildDied) as died:
            await hung
        assert died.value.signal == signal.SIGKILL
        await wait_until(lambda: not any(pid_alive(p) for p in old), what="its children gone")
        await wait_until(lambda: len(_pids(pool)) == 2 and not set(_pids(pool)) & set(old))
        assert _server(pool) != server
        assert await pool.submit({"type": "add", "a": 1, "b": 1}) == 2
    assert "fork server" in caplog.text
    assert "died" in caplog.text


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


async def test_the_fork_server_and_its_children_die_when_the_master_is_killed() -> None:
    master = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MASTER, stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True
    )
    try:
        assert master.stdout is not None
        line = await asyncio.wait_for(master.stdout.readline(), GUARD)
        pids = [int(p) for p in line.split()]
        (server,) = {_parent(pid) for pid in pids}
        assert server != master.pid
        assert _parent(server) == master.pid
        master.send_signal(signal.SIGKILL)
        await master.wait()
        await wait_until(
            lambda: not any(pid_alive(p) for p in [server, *pids]),
            timeout=5.0,
            what="the fork server and every child (one inside a handler) to exit",
        )
    finally:
        if master.returncode is None:
            master.kill()
            await master.wait()


GRANDCHILD = """
    import subprocess
    import qoper8

    worker = qoper8.Worker()

    @worker.handler("start_and_hang")
    def start_and_hang(path: str) -> None:
        sleeper = subprocess.Popen(["sleep", "60"])  # in this child's process group
        with open(path, "w") as f:
            f.write(str(sleeper.pid))
        sleeper.wait()
"""


async def test_a_timeout_kills_the_forked_childs_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "fs_grandchild", GRANDCHILD)
    mark = tmp_path / "sleeper.pid"
    async with asyncio.timeout(GUARD), qoper8.Pool(ref, children=1) as pool:
        _server(pool)
        job = asyncio.create_task(
            pool.submit({"type": "start_and_hang", "path": str(mark)}, timeout=3.0)
        )
        await wait_until(lambda: mark.exists() and mark.read_text() != "")
        sleeper = int(mark.read_text())
        assert pid_alive(sleeper)
        with pytest.raises(qoper8.JobTimeout):
            await job
        await wait_until(lambda: not pid_alive(sleeper), what="the handler's own child killed")


NOISY = """
    import os
    import qoper8

    print("imported once, in the fork server", flush=True)
    worker = qoper8.Worker()

    @worker.handler("say")
    def say(text: str) -> int:
        print(text)
        return os.getpid()
"""


async def test_output_is_captured_and_prefixed_per_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "fs_noisy", NOISY)
    lines: list[tuple[int, int, str]] = []

    def collect(child_id: int, pid: int, line: str) -> None:
        lines.append((child_id, pid, line))

    async with asyncio.timeout(GUARD), qoper8.Pool(ref, children=2, on_output=collect) as pool:
        server = _server(pool)
        ids = {c.pid: c.id for c in pool.statistics().children}
        pid = await pool.submit({"type": "say", "text": "hello from a child"}, result_type=int)
        await wait_until(lambda: (ids[pid], pid, "hello from a child") in lines)
        # The worker module's output at import: once, from the server, as child 0.
        imported = (0, server, "imported once, in the fork server")
        await wait_until(lambda: imported in lines)
    assert sum(1 for line in lines if line[2] == imported[2]) == 1


async def test_reload_starts_a_fork_server_with_the_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = 'import qoper8\nworker = qoper8.Worker()\nworker.handler("v")(lambda: {!r})\n'
    ref = _module(tmp_path, monkeypatch, "fs_versioned", source.format("one"))
    async with asyncio.timeout(GUARD), qoper8.Pool(ref, children=2) as pool:
        assert await pool.submit({"type": "v"}) == "one"
        old_server = _server(pool)
        (tmp_path / "fs_versioned.py").write_text(source.format("version two"))
        await pool.reload()
        assert await pool.submit({"type": "v"}) == "version two"
        await wait_until(lambda: len(_pids(pool)) == 2, what="the old generation retired")
        assert _server(pool) != old_server
        await wait_until(lambda: not pid_alive(old_server), what="the old fork server to exit")


BOXES = """
    import os
    import qoper8

    worker = qoper8.Worker()

    @worker.handler("block")
    def block(fifo: str) -> str:
        with open(fifo) as f:
            return f.readline().strip()

    @worker.actor("box")
    class Box:
        def version(self) -> str:
            return {!r}

        def pid(self) -> int:
            return os.getpid()
"""


async def test_actor_children_come_from_the_pools_fork_server_of_the_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "fs_boxes", BOXES.format("one"))
    async with asyncio.timeout(GUARD), qoper8.Pool(ref, children=1) as pool:

        async def actor_on_a_new_child(name: str) -> tuple[str, int]:
            # The pool's one child is busy: the actor needs a child of its own.
            gate = new_fifo(tmp_path, name)
            busy = asyncio.create_task(pool.submit({"type": "block", "fifo": gate}))
            await wait_until(lambda: pool.statistics().running == 1)
            box = await pool.actors.create("box", name)
            version, pid = await box.call("version"), await box.call("pid")
            await release(gate)
            await busy
            assert isinstance(version, str)
            assert isinstance(pid, int)
            return version, pid

        server = _server(pool)
        version, first = await actor_on_a_new_child("first")
        assert (version, _parent(first)) == ("one", server)
        (tmp_path / "fs_boxes.py").write_text(textwrap.dedent(BOXES.format("version two")))
        await pool.reload()
        version, second = await actor_on_a_new_child("second")
        assert version == "version two"
        assert _parent(second) not in (server, os.getpid())


THREADED = """
    import threading
    import qoper8

    _stop = threading.Event()
    threading.Thread(target=_stop.wait, name="poller", daemon=True).start()
    worker = qoper8.Worker()

    @worker.handler("ok")
    def ok() -> bool:
        return True
"""

CONNECTED = """
    import socket
    import qoper8

    connection = socket.socketpair()  # a database connection, opened at import
    worker = qoper8.Worker()

    @worker.handler("ok")
    def ok() -> bool:
        return True
"""


@pytest.mark.parametrize(
    ("source", "why"), [(THREADED, "thread(s) at import (poller)"), (CONNECTED, "socket(s)")]
)
async def test_a_worker_module_not_fork_safe_at_import_falls_back_to_spawn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    source: str,
    why: str,
) -> None:
    name = "fs_threaded" if source is THREADED else "fs_connected"
    ref = _module(tmp_path, monkeypatch, name, source)
    with caplog.at_level(logging.WARNING, logger="qoper8"):
        async with asyncio.timeout(GUARD), qoper8.Pool(ref, children=2) as pool:
            assert all(_parent(pid) == os.getpid() for pid in _pids(pool))
            assert await pool.submit({"type": "ok"}) is True
    warnings = [r.getMessage() for r in caplog.records if "not fork-safe" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert why in warnings[0]
    assert "start by spawn" in warnings[0]


def test_the_fork_server_never_loads_the_masters_rooms() -> None:
    code = (
        "import sys, qoper8._engine.fork_server_main, tests.handlers;"
        "bad = [m for m in sys.modules if m.startswith(("
        "'qoper8._engine.pool', 'qoper8._engine.dispatcher', 'qoper8._engine.supervisor', "
        "'qoper8._engine.fork_servers', 'qoper8._daemon', 'qoper8._redis', 'asyncio'))];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_start_method_is_a_setting_with_a_flag() -> None:
    assert qoper8.PoolConfig(worker="a.b").start_method == "forkserver"  # Linux
    assert qoper8.PoolConfig(worker="a.b", start_method="spawn").start_method == "spawn"
    with pytest.raises(qoper8.ConfigError, match="start_method"):
        qoper8.Pool("a.b", start_method="fork")
    parser, _ = _parser()
    args = parser.parse_args(["serve", "--worker", "a.b", "--start-method", "spawn"])
    overrides = {setting: getattr(args, setting) for _, setting, _, _ in _SETTING_FLAGS}
    assert load_config(environ={}, overrides=overrides).pool.start_method == "spawn"
