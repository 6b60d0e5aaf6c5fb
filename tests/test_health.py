"""``/v1/health`` says ``degraded`` (503) while children fail to start or the Redis intake
cannot reach Redis (issue 9, items 1 and 10), and ``ready`` again once that passes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.http_api import HttpApi
from tests.conftest import wait_until
from tests.daemon_support import Daemon, serve_like_the_daemon
from tests.test_http_api import FakeControl

if TYPE_CHECKING:
    from pathlib import Path


async def _health(http: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    resp = await http.get("/v1/health")
    body = await resp.json()
    assert isinstance(body, dict)
    return resp.status, body


async def test_health_is_degraded_while_children_fail_to_start_then_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dependency = tmp_path / "dependency"
    dependency.write_text("up")
    monkeypatch.setenv("TEST_QOPER8_DEPENDENCY", str(dependency))
    async with qoper8.Pool("tests.flaky_dependency:worker", children=1) as pool:
        api = HttpApi(pool, FakeControl(), token=None, max_body_bytes=4096)
        async with TestClient(serve_like_the_daemon(api)) as http:
            assert await _health(http) == (200, {"status": "ready", "ready": 1, "target": 1})
            pid = await pool.submit({"type": "pid"})
            assert isinstance(pid, int)
            dependency.write_text("down")
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda: pool.is_degraded, what="the pool degraded")
            status, body = await _health(http)
            assert (status, body["status"]) == (503, "degraded")
            assert body["failed_starts"] >= 1
            dependency.write_text("up")
            await wait_until(lambda: not pool.is_degraded, what="the pool recovered")
            assert (await _health(http))[0] == 200


async def test_health_is_degraded_while_redis_is_unreachable() -> None:
    async with qoper8.Pool("tests.handlers:worker", children=1) as pool:
        control = FakeControl()
        api = HttpApi(pool, control, token=None, max_body_bytes=4096)
        async with TestClient(serve_like_the_daemon(api)) as http:
            control.redis = {"connected": True, "last_error": None}
            status, body = await _health(http)
            assert (status, body["status"], body["redis"]) == (200, "ready", "connected")
            control.redis = {"connected": False, "last_error": "Connection refused"}
            status, body = await _health(http)
            assert (status, body["status"], body["redis"]) == (503, "degraded", "disconnected")
            assert body["redis_error"] == "Connection refused"


def test_a_daemon_with_an_unreachable_redis_is_not_ready(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    d = Daemon(tmp_path, "--redis", "redis://127.0.0.1:1/0", children=1).start()
    try:
        deadline = time.monotonic() + 20
        body: Any = None
        while not (isinstance(body, dict) and body.get("status") == "degraded"):
            assert d.proc is not None
            assert d.proc.poll() is None, d.describe()
            assert time.monotonic() < deadline, f"health never said degraded: {body}"
            time.sleep(0.05)  # polling a subprocess nothing can notify us about
            with contextlib.suppress(OSError):
                code, body = d.json("GET", "/v1/health")
        assert code == 503
        assert body["redis"] == "disconnected"
        assert d.status()["redis"]["connected"] is False
        # TERM with nothing to hand back does not wait out the 30 s grace on a Redis that
        # cannot be reached (the bound is far below it).
        d.signal(signal.SIGTERM)
        assert d.wait_exit(timeout=10) == 0
    finally:
        d.stop()
    d.wait_group_gone()
