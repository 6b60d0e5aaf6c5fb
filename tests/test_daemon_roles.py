"""Roles in the daemon (issue 13 item 1), in process: the HTTP API over a pool of roles (the
role of a job, the roles in /v1/status, /metrics labelled by role, resize per role, all as
documented), the Client's role=, and ``qoper8 resize``'s arguments. A real ``qoper8 serve``
with roles is ``test_serve_roles``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.cli_commands import resize_request
from qoper8._daemon.cli_status import format_status
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.metrics import render_metrics
from tests.daemon_support import serve_like_the_daemon

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.timeout(60)

USERS = "tests.roles.users:worker"
REPORTS = "tests.roles.reports:worker"


class RolesControl:
    """The daemon's side: resizes the pool's roles for real, recording what was asked."""

    def __init__(self, pool: qoper8.Pool) -> None:
        self.pool = pool
        self.draining = False
        self.default_timeout: float | None = 30.0
        self.resized: list[tuple[int | tuple[int, int], str | None]] = []

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": qoper8.__version__,
            "worker": f"users={USERS}, reports={REPORTS}",
            "uptime": 1.0,
            "draining": False,
            "handlers": sorted(self.pool.handlers),
            "urls": [],
            "redis": None,
        }

    def redis_state(self) -> dict[str, Any] | None:
        return None

    async def wait_started(self) -> None:
        return None

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> int:
        self.resized.append((children, role))
        inner = self.pool.role(role or self.pool.roles[0])
        await inner.resize(children)
        return inner.size

    async def reload(self) -> int:
        return 1


class Api:
    def __init__(self, http: TestClient[Any, Any], control: RolesControl) -> None:
        self.http = http
        self.control = control

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        resp = await self.http.post(path, json=body)
        return resp.status, await resp.json()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    roles = {
        "users": qoper8.Role(USERS, children=1),
        "reports": qoper8.Role(REPORTS, children=(1, 2)),
    }
    async with qoper8.Pool(roles=roles, timeout=30) as pool:
        control = RolesControl(pool)
        http_api = HttpApi(pool, control, token=None, max_body_bytes=4096)
        async with TestClient(serve_like_the_daemon(http_api)) as http:
            yield Api(http, control)


# ==================================================================== in process


async def test_a_job_takes_its_role_from_the_query_or_its_type(api: Api) -> None:
    assert (await api.post("/v1/submit", {"type": "report.build"}))[1]["result"]["role"] == (
        "reports"
    )
    for role in ("users", "reports"):
        status, body = await api.post(f"/v1/submit?role={role}", {"type": "whoami"})
        assert (status, body["result"]["role"]) == (200, role)
    # A type both roles handle needs the role; an unknown role is named with the closest.
    status, body = await api.post("/v1/submit", {"type": "whoami"})
    assert (status, body["error"]["type"]) == (422, "InvalidAction")
    assert "pass role=" in body["error"]["message"]
    status, body = await api.post("/v1/submit?role=user", {"type": "whoami"})
    assert (status, body["error"]["type"]) == (422, "InvalidAction")
    assert "did you mean 'users'" in body["error"]["message"]
    # A role that does not handle the type refuses it as any pool would.
    status, body = await api.post("/v1/submit?role=users", {"type": "report.build"})
    assert (status, body["error"]["type"]) == (422, "InvalidAction")
    # The stream route takes the same parameter.
    resp = await api.http.post(
        "/v1/stream?role=reports",
        json={"type": "report.lines", "n": 3},
        headers={"Accept": "application/x-ndjson"},
    )
    lines = [line for line in (await resp.text()).splitlines() if line]
    assert lines == ['{"message":0}', '{"message":1}', '{"message":2}', '{"result":3}']


async def test_the_client_sends_the_role(api: Api) -> None:
    server = api.http.server
    async with qoper8.Client(f"http://{server.host}:{server.port}") as client:
        mine = await client.submit({"type": "whoami"}, role="reports", result_type=dict)
        assert mine["role"] == "reports"
        async with client.stream({"type": "whoami"}, role="users") as stream:
            assert [m async for m in stream] == []
        assert isinstance(stream.result, dict)
        assert stream.result["role"] == "users"
        with pytest.raises(qoper8.InvalidAction, match="unknown role 'nobody'"):
            await client.submit({"type": "whoami"}, role="nobody")


async def test_status_lists_every_role_with_its_own_figures(api: Api) -> None:
    for _ in range(3):
        await api.post("/v1/submit?role=users", {"type": "whoami"})
    status = (await api.http.get("/v1/status")).status
    data = await (await api.http.get("/v1/status")).json()
    assert status == 200
    users, reports = data["roles"]
    assert (users["name"], users["worker"], users["target_size"]) == ("users", USERS, 1)
    assert (users["min_size"], users["max_size"], users["paused"]) == (None, None, False)
    assert (reports["name"], reports["min_size"], reports["max_size"]) == ("reports", 1, 2)
    assert (users["completed"], reports["completed"]) == (3, 0)
    by_id = {c["id"]: c for c in data["children"]}
    assert {by_id[i]["role"] for i in users["children"]} == {"users"}
    assert {by_id[i]["role"] for i in reports["children"]} == {"reports"}
    # qoper8 status: one table per role, each role's children under it.
    text = format_status(data)
    assert "roles users, reports" in text.splitlines()[0]
    assert f"role users: {USERS}, target 1, 0 queued" in text
    assert "role reports: " in text
    assert "(autoscaling 1:2)" in text


async def test_metrics_have_a_series_per_role(api: Api) -> None:
    await api.post("/v1/submit", {"type": "report.build"})
    text = await (await api.http.get("/metrics")).text()
    assert 'qoper8_jobs_total{role="reports",outcome="completed"} 1' in text
    assert 'qoper8_jobs_total{role="users",outcome="completed"} 0' in text
    assert 'qoper8_queue_length{role="users"} 0' in text
    assert 'qoper8_children{role="users",state="idle"} 1' in text
    assert 'qoper8_run_time_seconds_count{role="reports"} 1' in text
    # Each family once, its HELP and TYPE once, every sample labelled.
    assert text.count("# TYPE qoper8_children gauge") == 1
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all('{role="' in line for line in samples)


def test_a_single_worker_keeps_its_unlabelled_series() -> None:
    from qoper8._engine.stats import Histogram, Percentiles, PoolStatistics

    none = Percentiles(0, None, None, None, None)
    hist = Histogram(((1.0, 0),), 0, 0.0)
    stats = PoolStatistics((), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, none, none, hist, hist)
    text = render_metrics(stats)
    assert "qoper8_queue_length 0" in text
    assert "role=" not in text


async def test_the_prometheus_collector_labels_roles_as_metrics_does(api: Api) -> None:
    pytest.importorskip("prometheus_client")
    from qoper8.prometheus import PoolCollector

    await api.post("/v1/submit", {"type": "report.build"})
    samples = {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for metric in PoolCollector(api.control.pool).collect()
        for s in metric.samples
    }
    assert ("qoper8_jobs_total", (("outcome", "completed"), ("role", "reports")), 1.0) in samples


async def test_resize_names_its_role_when_there_are_several(api: Api) -> None:
    status, body = await api.post("/v1/resize", {"children": 2})
    assert (status, body["error"]["type"]) == (422, "ConfigError")
    assert "roles users, reports" in body["error"]["message"]
    status, body = await api.post("/v1/resize", {"children": 2, "role": "reprots"})
    assert (status, body["error"]["type"]) == (422, "ConfigError")
    assert "did you mean 'reports'" in body["error"]["message"]
    status, body = await api.post("/v1/resize", {"children": 2, "role": 7})
    assert (status, body["error"]["type"]) == (400, "ConfigError")
    assert api.control.resized == []

    status, body = await api.post("/v1/resize", {"delta": 1, "role": "users"})
    assert (status, body) == (
        200,
        {"children": 2, "generation": 1, "role": "users", "min_size": None, "max_size": None},
    )
    # An autoscaled role: a delta moves its least (and its most when it must), as TTIN does.
    status, body = await api.post("/v1/resize", {"delta": 2, "role": "reports"})
    assert (status, body["min_size"], body["max_size"]) == (200, 3, 3)
    status, body = await api.post("/v1/resize", {"children": [0, 4], "role": "reports"})
    assert (status, body["min_size"], body["max_size"]) == (200, 0, 4)
    for bad in ([3, 1], [0, 0], [1], [1, 2, 3], [-1, 2], [1, "2"]):
        status, body = await api.post("/v1/resize", {"children": bad, "role": "reports"})
        assert status in (400, 422), (bad, body)
        assert body["error"]["type"] == "ConfigError"
    assert api.control.resized == [(2, "users"), ((3, 3), "reports"), ((0, 4), "reports")]
    assert api.control.pool.role("users").size == 2


async def test_the_answers_about_roles_are_the_documented_ones(api: Api) -> None:
    from qoper8._daemon.openapi import openapi_document
    from tests.test_openapi import Documented

    doc = Documented(
        openapi_document(version="0", token=False, public_health=False, dashboard=True)
    )

    async def check(method: str, path: str, body: Any = None) -> int:
        resp = await api.http.request(method, path, json=body)
        raw = await resp.read()
        doc.check(method, path.split("?")[0], resp.status, resp.headers["Content-Type"], raw)
        return resp.status

    assert await check("GET", "/v1/status") == 200
    assert await check("POST", "/v1/submit?role=reports", {"type": "whoami"}) == 200
    assert await check("POST", "/v1/submit?role=nobody", {"type": "whoami"}) == 422
    assert await check("POST", "/v1/submit", {"type": "whoami"}) == 422
    assert await check("POST", "/v1/resize", {"children": [1, 2], "role": "reports"}) == 200
    assert await check("POST", "/v1/resize", {"delta": 1, "role": "users"}) == 200
    assert await check("POST", "/v1/resize", {"children": 1}) == 422
    assert await check("POST", "/v1/resize", {"children": 1, "role": ["users"]}) == 400


@pytest.mark.parametrize(
    ("text", "request_"),
    [
        ("3", {"children": 3}),
        ("+2", {"delta": 2}),
        ("-1", {"delta": -1}),
        ("0:4", {"children": (0, 4)}),
        (" 2:8 ", {"children": (2, 8)}),
    ],
)
def test_qoper8_resize_reads_a_size_a_delta_or_a_range(
    text: str, request_: dict[str, object]
) -> None:
    assert resize_request(text) == request_


@pytest.mark.parametrize("text", ["two", "1:", ":2", "1:2:3", ""])
def test_qoper8_resize_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="is not N"):
        resize_request(text)


async def test_a_role_at_zero_children_is_found_by_type() -> None:
    roles = {
        "users": qoper8.Role(USERS, children=1),
        "reports": qoper8.Role(REPORTS, children=(0, 1)),
    }
    async with qoper8.Pool(roles=roles, timeout=30) as pool:
        built = await pool.submit({"type": "report.build"}, result_type=dict)
        assert built["role"] == "reports"
