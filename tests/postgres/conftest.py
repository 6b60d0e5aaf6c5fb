"""Fixtures for the PostgreSQL tests: the machine's server (``pg_dsn``), a table of the test's
own (``pg_table``), and the children's backends as the server sees them (``backends``).

Without a PostgreSQL on 127.0.0.1:5432 (user postgres, trust, database test) the tests are
skipped locally and fail when ``CI=true``, as the Redis tests do. Each test's children
connect under an application name of its own and use a table of their own, so runs can
share the server with its other users.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Iterator

PG_HOST = "127.0.0.1"
PG_PORT = 5432
BASE_DSN = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test"
WORKER = "workers.postgres:worker"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_base_dsn() -> str:
    try:
        with psycopg.connect(BASE_DSN, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _missing(f"no PostgreSQL at {PG_HOST}:{PG_PORT} ({exc}); start one to run these")
    return BASE_DSN


@pytest.fixture
def app_name() -> str:
    """The application name this test's children connect under (pg_stat_activity)."""
    return f"qoper8-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_table(pg_base_dsn: str) -> Iterator[str]:
    """A table name of this test's own; the table is dropped afterwards."""
    name = f"qoper8_t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_base_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def pg_env(pg_base_dsn: str, pg_table: str, app_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``PG_DSN`` and ``PG_TABLE`` for the children of this test; returns the DSN."""
    dsn = f"{pg_base_dsn} application_name={app_name}"
    monkeypatch.setenv("PG_DSN", dsn)
    monkeypatch.setenv("PG_TABLE", pg_table)
    return dsn


class Backends:
    """The server side of the children's connections, seen from a connection of our own."""

    def __init__(self, dsn: str, app_name: str) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._app_name = app_name

    def pids(self) -> set[int]:
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self._app_name,)
        ).fetchall()
        return {int(r[0]) for r in rows}

    def terminate_all(self) -> int:
        """``pg_terminate_backend`` every child's connection; how many there were."""
        rows = self._conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (self._app_name,),
        ).fetchall()
        return sum(1 for r in rows if r[0])

    def close(self) -> None:
        self._conn.close()


@pytest.fixture
def backends(pg_base_dsn: str, app_name: str) -> Iterator[Backends]:
    b = Backends(pg_base_dsn, app_name)
    yield b
    b.close()
