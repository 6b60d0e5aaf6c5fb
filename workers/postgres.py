"""Example worker module: PostgreSQL through psycopg 3 (a sync driver), one connection per child.

Each child connects once, in ``on_start`` (and makes the table if it is missing), and closes
its connection in ``on_stop``. Copy this file to start your own. Settings, read in each child:

- ``PG_DSN``: a libpq connection string (default
  ``host=127.0.0.1 port=5432 user=postgres dbname=test``; a ``QOPER8_`` name would be taken
  for one of the daemon's settings). ``PGPASSWORD`` and the other ``PG*`` variables of libpq
  apply as usual.
- ``PG_TABLE``: the table the handlers use (default ``qoper8_items``), made if missing.

What production does to a connection: the server restarts, an operator or a pooler runs
``pg_terminate_backend``, ``idle_session_timeout`` or a firewall drops an idle one (under
light load the pool lets children sit idle for long: the warm one takes the work). The
driver only finds out on the next query: ``psycopg.OperationalError`` with ``conn.broken``
(or ``conn.closed``) set. Each handler then does what is safe for it:

- ``item.get``, ``sql.now`` reconnect in this child and run the query once more: a read
  changes nothing, so running it twice is harmless, and the caller never sees the loss.
- ``item.put`` does the same: an upsert of one value is idempotent, a second run leaves the
  same row.
- ``counter.add`` raises ``qoper8.ReplaceChild``: the job fails (``JobFailed``, status 503,
  code ``child_replaced``) and the child is replaced after answering. The increment may
  have committed before the connection broke; only the caller can tell whether to run it
  again.

A reconnect that fails (the server is down) raises ``ReplaceChild`` too: the fresh child
connects in ``on_start``, so while the server is down the pool reports itself degraded and
respawns with back-off, queued jobs waiting for it, instead of every job failing in a child
that holds a dead connection.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import BaseModel

import qoper8

worker = qoper8.Worker()

DEFAULT_DSN: Final = "host=127.0.0.1 port=5432 user=postgres dbname=test"
DEFAULT_TABLE: Final = "qoper8_items"
# Seconds to wait for the server when connecting: a child that cannot connect fails its
# start (or its reconnect) instead of hanging until start_timeout kills it.
CONNECT_TIMEOUT: Final = 5

_conn: psycopg.Connection[Any] | None = None


class Item(BaseModel):
    key: str
    value: str
    count: int


def _table_name() -> str:
    return os.environ.get("PG_TABLE") or DEFAULT_TABLE


def _table() -> sql.Identifier:
    return sql.Identifier(_table_name())


def _connect() -> psycopg.Connection[Any]:
    params = conninfo_to_dict(os.environ.get("PG_DSN") or DEFAULT_DSN)
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", "qoper8")  # how pg_stat_activity shows children
    # autocommit: each statement is its own transaction, so a child never sits "idle in
    # transaction" holding locks between two jobs.
    return psycopg.connect(make_conninfo("", **params), autocommit=True)


@worker.on_start
def connect() -> None:
    global _conn
    _conn = _connect()
    table = _table()
    # Several children start at once, and concurrent CREATE TABLE IF NOT EXISTS can fail on
    # the catalog's unique index: one child at a time, under a lock named after the table.
    with _conn.transaction():
        _conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_table_name(),))
        _conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, "
                "value text NOT NULL DEFAULT '', count bigint NOT NULL DEFAULT 0)"
            ).format(table)
        )


@worker.on_stop
def close() -> None:
    if _conn is not None:
        _conn.close()


def _lost(conn: psycopg.Connection[Any]) -> bool:
    """Whether the last error broke the connection itself (as opposed to the statement)."""
    return conn.broken or conn.closed


def _connection() -> psycopg.Connection[Any]:
    global _conn
    assert _conn is not None, "on_start opens the connection before any handler runs"
    if _lost(_conn):  # known broken already: reconnecting first sends nothing twice
        _conn = _reconnect(_conn)
    return _conn


def _reconnect(old: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A new connection for this child, or ``ReplaceChild`` if the server cannot be reached."""
    old.close()
    try:
        return _connect()
    except psycopg.OperationalError as exc:
        raise qoper8.ReplaceChild(
            f"child pid {os.getpid()}: cannot reconnect to PostgreSQL: {exc}"
        ) from exc


def _repeatable(query: sql.SQL | sql.Composed, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Run a statement that is safe to run twice; on a lost connection reconnect and run
    it once more (a second loss raises ``ReplaceChild``)."""
    global _conn
    conn = _connection()
    try:
        return conn.execute(query, params).fetchone()
    except psycopg.OperationalError as exc:
        if not _lost(conn):
            raise
        first_line = str(exc).strip().partition("\n")[0]
        print(f"connection lost, reconnecting: {first_line}", file=sys.stderr)
    conn = _conn = _reconnect(conn)
    try:
        return conn.execute(query, params).fetchone()
    except psycopg.OperationalError as exc:
        if not _lost(conn):
            raise
        raise qoper8.ReplaceChild(f"child pid {os.getpid()}: connection lost twice: {exc}") from exc


def _once(query: sql.SQL | sql.Composed, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Run a statement that must not run twice; a lost connection fails the job with
    ``ReplaceChild`` (the caller decides whether to run it again)."""
    conn = _connection()
    try:
        return conn.execute(query, params).fetchone()
    except psycopg.OperationalError as exc:
        if not _lost(conn):
            raise
        raise qoper8.ReplaceChild(
            f"child pid {os.getpid()}: connection to PostgreSQL lost; the statement may or "
            f"may not have committed: {exc}"
        ) from exc


def _item(row: tuple[Any, ...] | None, key: str) -> Item:
    if row is None:
        raise qoper8.HandlerError(
            f"no item {key!r}", status=404, code="not_found", details={"key": key}
        )
    return Item(key=row[0], value=row[1], count=row[2])


@worker.handler("item.get")
def get_item(key: str) -> Item:
    query = sql.SQL("SELECT key, value, count FROM {} WHERE key = %s").format(_table())
    return _item(_repeatable(query, (key,)), key)


@worker.handler("item.put")
def put_item(key: str, value: str) -> Item:
    query = sql.SQL(
        "INSERT INTO {} (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING key, value, count"
    ).format(_table())
    return _item(_repeatable(query, (key, value)), key)


@worker.handler("counter.add")
def add_to_counter(key: str, by: int = 1) -> int:
    query = sql.SQL(
        "INSERT INTO {0} AS t (key, count) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET count = t.count + EXCLUDED.count RETURNING count"
    ).format(_table())
    row = _once(query, (key, by))
    assert row is not None
    return int(row[0])


@worker.handler("sql.now")
def now() -> str:
    """The server's clock (RFC 3339): a cheap check that the connection works."""
    row = _repeatable(sql.SQL("SELECT now()"), ())
    assert row is not None
    return str(row[0].isoformat())
