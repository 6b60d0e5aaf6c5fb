"""A FastAPI app over PostgreSQL through qoper8: the endpoints stay async, psycopg's sync calls
run in the pool's children (workers/postgres.py, one connection each).

From a clone, with PostgreSQL on 127.0.0.1:5432 (or ``PG_DSN`` set):

    .venv/bin/pip install -e ".[fastapi,postgres,prometheus]" uvicorn
    .venv/bin/uvicorn docs.examples.fastapi_app:app --workers 2

Each uvicorn worker process runs this module and its lifespan, so each opens a pool of its
own: with ``--workers 2`` and ``CHILDREN=4`` that is 8 children and 8 connections to
PostgreSQL. ``CHILDREN`` defaults to the CPU count divided by ``WEB_PROCESSES`` (set it to
the ``--workers`` you run).

Errors answer as the daemon's do: ``GET /items/missing`` is 404 with
``{"error": {"type": "JobFailed", "code": "not_found", ...}}``, a replaced child's write is
503 with ``Retry-After``. ``GET /metrics`` serves the pool's metrics, named as the daemon's.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from prometheus_client import REGISTRY, make_asgi_app
from pydantic import BaseModel

import qoper8
import qoper8.fastapi
import qoper8.prometheus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WORKER = "workers.postgres:worker"
# A job that takes longer than this fails with 504 (its child is replaced): an endpoint
# never waits on PostgreSQL for ever.
TIMEOUT = 10.0


def children() -> int:
    """Children per web worker process: the CPUs shared among the processes."""
    if os.environ.get("CHILDREN"):
        return int(os.environ["CHILDREN"])
    processes = int(os.environ.get("WEB_PROCESSES") or 1)
    return max(1, (os.cpu_count() or 1) // processes)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with qoper8.fastapi.open_pool(app, WORKER, children=children(), timeout=TIMEOUT) as pool:
        collector = qoper8.prometheus.PoolCollector(pool)
        REGISTRY.register(collector)
        try:
            yield
        finally:
            REGISTRY.unregister(collector)


app = FastAPI(title="qoper8 + PostgreSQL", lifespan=lifespan)
qoper8.fastapi.add_error_handler(app)
app.mount("/metrics", make_asgi_app())


class Value(BaseModel):
    value: str


@app.get("/items/{key}")
async def get_item(key: str, pool: qoper8.fastapi.PoolDep) -> Any:
    return await pool.submit({"type": "item.get", "key": key})


@app.put("/items/{key}")
async def put_item(key: str, body: Value, pool: qoper8.fastapi.PoolDep) -> Any:
    return await pool.submit({"type": "item.put", "key": key, "value": body.value})


@app.post("/counters/{key}")
async def add_to_counter(key: str, pool: qoper8.fastapi.PoolDep, by: int = 1) -> Any:
    return {"count": await pool.submit({"type": "counter.add", "key": key, "by": by})}


@app.get("/now")
async def now(pool: qoper8.fastapi.PoolDep) -> Any:
    return {"now": await pool.submit({"type": "sql.now"})}
