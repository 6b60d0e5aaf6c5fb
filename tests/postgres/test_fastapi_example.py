"""docs/examples/fastapi_app.py against the real PostgreSQL, through httpx's ASGI transport:
the endpoints, the daemon's error answers, /metrics, and a write whose connection was
terminated (503 with Retry-After, then served by a fresh child)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from docs.examples.fastapi_app import app
from tests.conftest import wait_until

if TYPE_CHECKING:
    from tests.postgres.conftest import Backends

pytestmark = pytest.mark.postgres


async def test_the_example_app_serves_postgres_and_answers_errors_as_the_daemon(
    pg_env: str, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHILDREN", "2")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        assert app.state.pool.size == 2
        put = await client.put("/items/a", json={"value": "x"})
        assert (put.status_code, put.json()) == (200, {"key": "a", "value": "x", "count": 0})
        got = await client.get("/items/a")
        assert got.json() == {"key": "a", "value": "x", "count": 0}
        missing = await client.get("/items/nope")
        assert missing.status_code == 404  # the handler's HandlerError(status=404)
        error = missing.json()["error"]
        assert (error["type"], error["code"], error["details"]) == (
            "JobFailed",
            "not_found",
            {"key": "nope"},
        )
        assert "remote_traceback" not in error  # as the daemon without --debug
        assert (await client.post("/counters/c")).json() == {"count": 1}
        assert (await client.post("/counters/c", params={"by": 5})).json() == {"count": 6}
        assert (await client.get("/now")).status_code == 200
        metrics = (await client.get("/metrics/")).text
        assert 'qoper8_jobs_total{outcome="completed"} 5.0' in metrics
        assert 'qoper8_jobs_total{outcome="failed"} 1.0' in metrics

        old = backends.pids()
        assert backends.terminate_all() == 2
        await wait_until(lambda: not backends.pids() & old, what="the backends gone")
        # A write finds its child's connection gone: 503, retry later. Each of the two
        # children can fail one write so (the one that finds out), and no more.
        lost = await client.post("/counters/c")
        assert lost.status_code == 503
        assert lost.headers["retry-after"] == "1"
        assert lost.json()["error"]["code"] == "child_replaced"
        answers = [await client.post("/counters/c") for _ in range(2)]
        statuses = [a.status_code for a in answers]
        assert statuses in ([200, 200], [503, 200]), statuses
        assert answers[-1].json() == {"count": 6 + statuses.count(200)}
    assert not hasattr(app.state, "pool")
