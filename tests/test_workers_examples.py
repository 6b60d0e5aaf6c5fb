"""The example worker modules in workers/ do what their docstrings say."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import qoper8
from tests.conftest import wait_until


async def test_users_worker_keeps_one_connection_per_child_and_answers_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERS_DB", str(tmp_path / "users.db"))
    async with qoper8.Pool("workers.users:worker", children=2) as pool:
        assert await pool.submit({"type": "user.get", "id": 1}) == {"id": 1, "name": "ada"}
        added = await pool.submit({"type": "user.add", "name": "linus"})
        assert added == {"id": 5, "name": "linus"}
        names = await asyncio.gather(
            *(pool.submit({"type": "user.get", "id": i}) for i in range(1, 6))
        )
        assert [u["name"] for u in names] == ["ada", "grace", "edsger", "barbara", "linus"]  # type: ignore[index,call-overload]
        assert await pool.submit({"type": "user.count"}) == 5
        with pytest.raises(qoper8.JobFailed) as info:
            await pool.submit({"type": "user.get", "id": 999})
        assert info.value.remote_type == "LookupError"
        listed = await pool.submit({"type": "user.list", "limit": 2})
        assert listed == [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]


async def test_cpu_worker_counts_primes() -> None:
    async with qoper8.Pool("workers.cpu:worker", children=2) as pool:
        counts = await asyncio.gather(
            pool.submit({"type": "primes.count", "below": 100}),
            pool.submit({"type": "primes.count", "below": 10**5}),
            pool.submit({"type": "fib", "n": 20}),
        )
        assert list(counts) == [25, 9592, 6765]
        digest = await pool.submit(
            {"type": "password.hash", "password": "pw", "salt": "s", "iterations": 10}
        )
        assert isinstance(digest, str)
        assert len(digest) == 64


class _LockedAtFirst:
    """A connection whose first ``locked`` calls fail the way SQLite fails a WAL switch that
    would deadlock: at once, without its busy wait."""

    def __init__(self, locked: int, message: str = "database is locked") -> None:
        self.calls = 0
        self.locked = locked
        self.message = message

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.locked:
            raise sqlite3.OperationalError(self.message)


def test_users_worker_retries_a_locked_wal_switch() -> None:
    from workers import users

    conn = _LockedAtFirst(locked=3)
    users._use_wal(conn)  # type: ignore[arg-type]
    assert conn.calls == 4


def test_users_worker_does_not_retry_other_database_errors() -> None:
    from workers import users

    conn = _LockedAtFirst(locked=1, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        users._use_wal(conn)  # type: ignore[arg-type]
    assert conn.calls == 1


def test_the_readme_first_command_runs_the_demo(tmp_path: Path) -> None:
    """``python -m workers``, the main job of the README's first command."""
    env = {**os.environ, "USERS_DB": str(tmp_path / "users.db")}
    proc = subprocess.run(
        [sys.executable, "-m", "workers"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "user 1: {'id': 1, 'name': 'ada'}" in out
    assert "names seen: ['ada', 'barbara', 'edsger', 'grace']" in out
    assert "user 999: JobFailed: LookupError: no user with id 999" in out
    assert "primes below 1e6 and 2e6: [78498, 148933]" in out
    assert "users pool: 1001 completed, 1 failed" in out
    assert "event loop lag while the pools served: p50 " in out


async def test_reports_worker_streams_rows_reports_progress_and_clears_its_cache() -> None:
    notices: list[qoper8.Notice] = []
    async with qoper8.Pool("workers.reports:worker", children=2) as pool:
        pool.on_message("report.done", notices.append)
        async with pool.stream({"type": "report.build", "rows": 1000}) as stream:
            rows = [row async for row in stream]
            assert stream.result == {"rows": 1000}
            assert stream.progress == {"done": 1000, "total": 1000}
        assert [r["number"] for r in rows] == list(range(1000))  # type: ignore[index,call-overload]
        async with pool.stream({"type": "words", "text": "to be or not"}) as stream:
            assert [w async for w in stream] == ["to", "be", "or", "not"]
        cleared = await pool.broadcast("cache.clear", sticky=True, timeout=10)
        assert cleared.complete
        assert sorted(cleared.values.values()) == [0, 1000]  # type: ignore[type-var]
        await wait_until(lambda: len(notices) == 1, what="the notice")
    assert len(notices) == 1
    assert notices[0].payload == {"rows": 1000, "pid": notices[0].pid}
