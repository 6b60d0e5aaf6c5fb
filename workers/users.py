"""Example worker module: synchronous database code, one SQLite connection per child.

This is Q-Oper8's own use case: a blocking driver that must not run on the event loop and is
not safe to share between threads. Each child opens its connection once, in ``on_start``, and
then answers one query at a time. Copy this file to start your own worker module.

The database file is ``$USERS_DB`` (default: ``qoper8-users.db`` in the temp folder);
it is created and seeded on first use.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time

from pydantic import BaseModel

import qoper8

worker = qoper8.Worker()

_db: sqlite3.Connection | None = None

SEED = [(1, "ada"), (2, "grace"), (3, "edsger"), (4, "barbara")]


class User(BaseModel):
    id: int
    name: str


def database_path() -> str:
    return os.environ.get("USERS_DB") or os.path.join(tempfile.gettempdir(), "qoper8-users.db")


def db() -> sqlite3.Connection:
    assert _db is not None, "on_start opens the connection before any handler runs"
    return _db


LOCK_TIMEOUT = 30.0


@worker.on_start
def connect() -> None:
    global _db
    # Several children start at once: wait on SQLite's lock instead of failing.
    _db = sqlite3.connect(database_path(), timeout=LOCK_TIMEOUT, isolation_level=None)
    _use_wal(_db)
    # One write transaction, locked from its first statement: SQLite then waits for a sibling
    # that is seeding too, instead of failing a read-then-write upgrade as a deadlock.
    _db.execute("BEGIN IMMEDIATE")
    try:
        _db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        _db.executemany("INSERT OR IGNORE INTO users (id, name) VALUES (?, ?)", SEED)
    except BaseException:
        _db.execute("ROLLBACK")
        raise
    _db.execute("COMMIT")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL (readers never block the writer). Two children switching a new file at
    once can get "database is locked" at once, without SQLite's busy wait (it would be a
    deadlock), so the switch is retried for up to ``LOCK_TIMEOUT``."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@worker.on_stop
def close() -> None:
    if _db is not None:
        _db.close()


@worker.handler("user.get")
def get_user(id: int) -> User:
    row = db().execute("SELECT id, name FROM users WHERE id = ?", (id,)).fetchone()
    if row is None:
        raise LookupError(f"no user with id {id}")
    return User(id=row[0], name=row[1])


@worker.handler("user.add")
def add_user(name: str) -> User:
    cur = db().execute("INSERT INTO users (name) VALUES (?)", (name,))
    assert cur.lastrowid is not None
    return User(id=cur.lastrowid, name=name)


@worker.handler("user.list")
def list_users(limit: int = 100) -> list[User]:
    rows = db().execute("SELECT id, name FROM users ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [User(id=r[0], name=r[1]) for r in rows]


@worker.handler("user.count")
def count_users() -> int:
    return int(db().execute("SELECT count(*) FROM users").fetchone()[0])
