"""Roles in the daemon (issue 13 item 1): the HTTP API over a pool of roles in process (the
role of a job, the roles in /v1/status, /metrics labelled by role, resize per role), then a
real ``qoper8 serve`` with two roles from a TOML file: the CLI, the signals (TTIN/TTOU on
the first role, WINCH and TTIN on every role), and HUP per role (one that adds or removes a
role is refused, and the daemon keeps serving)."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.cli_commands import resize_request
from qoper8._daemon.cli_status import format_status
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.metrics import render_metrics
from tests.daemon_support import (
    run_cli,
    running,
    serve_like_the_daemon,
    wait_status,
    wait_until,
    write_toml,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

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
        return {"pid": os.getpid(), "worker": f"users={USERS}, reports={REPORTS}"}

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


# ==================================================================== a real daemon


def _config(
    tmp_path: Path, *, users: int = 1, roles: tuple[str, ...] = ("users", "reports")
) -> Path:
    lines = ["timeout = 30", "idle-timeout = 30"]
    if "users" in roles:
        lines += ["[roles.users]", f'worker = "{USERS}"', f"children = {users}"]
    if "reports" in roles:
        lines += ["[roles.reports]", f'worker = "{REPORTS}"', 'children = "1:3"']
    return write_toml(tmp_path / "roles.toml", lines)


def _role(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in status["roles"] if r["name"] == name)
    return found


def _ready(status: dict[str, Any], name: str, size: int, generation: int | None = None) -> bool:
    role = _role(status, name)
    gen = role["generation"] if generation is None else generation
    by_id = {c["id"]: c for c in status["children"]}
    mine = [by_id[i] for i in role["children"] if i in by_id]
    return (
        role["generation"] == gen
        and role["target_size"] == size
        and len(mine) == size
        and all(c["state"] in ("idle", "busy") and c["generation"] == gen for c in mine)
    )


def _serve(tmp_path: Path, config: Path) -> Any:
    return running(tmp_path, "-c", str(config), worker=None)


def test_qoper8_commands_act_on_the_roles_of_a_daemon(tmp_path: Path) -> None:
    with _serve(tmp_path, _config(tmp_path)) as d:
        url = ("--url", d.url)
        done = run_cli("submit", '{"type": "whoami"}', "--role", "reports", *url)
        assert done.returncode == 0, done.stderr
        assert '"role":"reports"' in done.stdout
        done = run_cli("submit", '{"type": "whoami"}', *url)
        assert done.returncode == 1
        assert "pass role=" in done.stderr

        done = run_cli("resize", "+1", *url)
        assert done.returncode == 1
        assert "name one" in done.stderr
        done = run_cli("resize", "users", "+1", *url)
        assert (done.returncode, done.stdout.strip()) == (0, "children: 2 (role users)")
        done = run_cli("resize", "reports", "0:2", *url)
        assert done.returncode == 0, done.stderr
        assert "autoscaling 0:2" in done.stdout

        done = run_cli("status", *url)
        assert done.returncode == 0, done.stderr
        assert f"role users: {USERS}, target 2" in done.stdout
        assert "(autoscaling 0:2)" in done.stdout
        status = d.status()
        assert (_role(status, "reports")["min_size"], _role(status, "reports")["max_size"]) == (
            0,
            2,
        )


async def test_ttin_and_ttou_act_on_the_first_role_winch_and_ttin_on_all(tmp_path: Path) -> None:
    with _serve(tmp_path, _config(tmp_path)) as d:
        async with d.client() as client:
            d.signal(signal.SIGTTIN)
            await wait_status(
                client, lambda s: _ready(s, "users", 2), daemon=d, what="users at 2 after TTIN"
            )
            status = await client.status()
            assert (_role(status, "reports")["min_size"], _role(status, "reports")["max_size"]) == (
                1,
                3,
            )
            d.signal(signal.SIGTTOU)
            await wait_status(
                client, lambda s: _ready(s, "users", 1), daemon=d, what="users at 1 after TTOU"
            )

            d.signal(signal.SIGWINCH)
            paused = await wait_status(
                client,
                lambda s: s["paused"] and not s["children"],
                daemon=d,
                what="every role paused, no child left",
            )
            assert all(r["paused"] for r in paused["roles"])
            health = await client.health()
            assert health["status"] == "paused"

            d.signal(signal.SIGTTIN)
            back = await wait_status(
                client,
                lambda s: _ready(s, "users", 1) and _ready(s, "reports", 1),
                daemon=d,
                what="every role back after TTIN",
            )
            assert not back["paused"]
            reports = _role(back, "reports")
            assert (reports["min_size"], reports["max_size"], reports["paused"]) == (1, 3, False)
            assert await client.submit({"type": "report.build"}, timeout=30) is not None


async def test_hup_reloads_every_role_and_refuses_a_change_of_roles(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with _serve(tmp_path, config) as d:
        async with d.client() as client:
            assert await client.resize(2, role="users") == 2
            # A plain HUP: a new generation for each role; users keeps the size set above.
            d.signal(signal.SIGHUP)
            await wait_status(
                client,
                lambda s: _ready(s, "users", 2, 2) and _ready(s, "reports", 1, 2),
                daemon=d,
                what="both roles at generation 2",
            )
            # The file's size changed: it applies, to that role only.
            _config(tmp_path, users=3)
            d.signal(signal.SIGHUP)
            await wait_status(
                client,
                lambda s: _ready(s, "users", 3, 3) and _ready(s, "reports", 1, 3),
                daemon=d,
                what="users at 3, both at generation 3",
            )
            # A role taken away: refused with a logged error; both roles serve on.
            _config(tmp_path, roles=("users",))
            d.signal(signal.SIGHUP)

            async def refused() -> bool:
                return "reload refused" in d.log_text()

            await wait_until(refused, daemon=d, what="the refused reload in the log")
            assert "the roles changed (users, reports -> users)" in d.log_text()
            status = await client.status()
            assert [r["name"] for r in status["roles"]] == ["users", "reports"]
            assert _role(status, "reports")["generation"] == 3
            mine = await client.submit({"type": "report.build"}, result_type=dict)
            assert mine["role"] == "reports"
            # Over HTTP the same refusal is a typed 422.
            with pytest.raises(qoper8.ConfigError, match="roles changed"):
                await client.reload()


def test_a_daemon_of_one_worker_answers_as_before(tmp_path: Path) -> None:
    with running(tmp_path, children=1) as d:
        status = d.status()
        [role] = status["roles"]
        assert (role["name"], role["worker"]) == ("daemon_handlers", "tests.daemon_handlers:worker")
        assert status["worker"] == "tests.daemon_handlers:worker"
        code, body = d.json("POST", "/v1/submit?role=daemon_handlers", {"type": "echo", "value": 1})
        assert (code, body) == (200, {"result": 1})
        code, body = d.json("POST", "/v1/submit?role=other", {"type": "echo", "value": 1})
        assert (code, body["error"]["type"]) == (422, "InvalidAction")
        code, body = d.json("POST", "/v1/resize", {"children": 2})
        assert (code, body["role"], body["children"]) == (200, "daemon_handlers", 2)
        _, _, metrics = d.http("GET", "/metrics")
        assert b"qoper8_queue_length 0" in metrics


@pytest.mark.xfail(
    strict=True,
    reason="engine: a role autoscaled from 0 knows its action types only once one of its "
    "children has started, so routing by type misses it until then (role= works)",
)
async def test_a_role_at_zero_children_is_found_by_type() -> None:
    roles = {
        "users": qoper8.Role(USERS, children=1),
        "reports": qoper8.Role(REPORTS, children=(0, 1)),
    }
    async with qoper8.Pool(roles=roles, timeout=30) as pool:
        built = await pool.submit({"type": "report.build"}, result_type=dict)
        assert built["role"] == "reports"
