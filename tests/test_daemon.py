"""``qoper8 serve`` as a real subprocess: every endpoint and error status, every signal.

Each signal is observed through ``/v1/status`` (or the log), never after a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from typing import TYPE_CHECKING, Any

import pytest

import qoper8
from qoper8._config_sources import load_config
from qoper8._daemon.daemon import Daemon as DaemonMaster
from qoper8.errors import PoolClosed, TransportError
from tests.daemon_support import (
    HANDLERS,
    Daemon,
    Load,
    running,
    settled,
    wait_status,
    wait_until,
    write_toml,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

OTHER_HANDLERS = "tests.handlers:worker"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon shared by the tests that leave it as they found it."""
    with running(tmp_path_factory.mktemp("daemon")) as d:
        yield d


def error_of(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict), body
    assert "error" in body, body
    err: dict[str, Any] = body["error"]
    return err


# ==================================================================== endpoints


def test_submit_returns_the_result(daemon: Daemon) -> None:
    assert daemon.json("POST", "/v1/submit", {"type": "add", "a": 2, "b": 3}) == (
        200,
        {"result": 5},
    )


def test_status_lists_children_with_pid_state_and_generation(daemon: Daemon) -> None:
    status = daemon.status()
    assert status["pid"] == daemon.pid
    assert status["worker"] == HANDLERS
    assert "echo" in status["handlers"]
    assert len(status["children"]) == 2
    for child in status["children"]:
        assert isinstance(child["pid"], int)
        assert child["state"] in ("idle", "busy")
        assert child["generation"] == status["generation"]
    for total in ("queue_length", "running", "submitted", "completed", "failed"):
        assert isinstance(status[total], int)


def test_health_is_ready_when_every_child_is(daemon: Daemon) -> None:
    assert daemon.json("GET", "/v1/health") == (200, {"status": "ready", "ready": 2, "target": 2})


def test_metrics_is_prometheus_text(daemon: Daemon) -> None:
    daemon.json("POST", "/v1/submit", {"type": "echo", "value": 1})
    code, headers, body = daemon.http("GET", "/metrics")
    text = body.decode()
    assert code == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE qoper8_jobs_total counter" in text
    completed = next(
        line
        for line in text.splitlines()
        if line.startswith('qoper8_jobs_total{outcome="completed"}')
    )
    assert int(completed.split()[-1]) >= 1
    assert "qoper8_queue_length 0" in text
    assert 'qoper8_children{state="idle"}' in text
    assert 'qoper8_run_time_seconds_bucket{le="+Inf"}' in text
    assert "qoper8_queue_wait_seconds_count" in text


def test_unknown_type_is_422_invalid_action(daemon: Daemon) -> None:
    code, body = daemon.json("POST", "/v1/submit", {"type": "no.such.type"})
    assert code == 422
    assert error_of(body)["type"] == "InvalidAction"
    assert "no.such.type" in error_of(body)["message"]


def test_params_the_handler_rejects_are_422(daemon: Daemon) -> None:
    code, body = daemon.json("POST", "/v1/submit", {"type": "add", "a": "x", "b": 1})
    assert (code, error_of(body)["type"]) == (422, "InvalidAction")


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"])
def test_malformed_json_is_400(daemon: Daemon, body: bytes) -> None:
    code, data = daemon.json("POST", "/v1/submit", body)
    assert (code, error_of(data)["type"]) == (400, "InvalidAction")


@pytest.mark.parametrize("body", [[1, 2], "echo", 3, None])
def test_a_body_that_is_not_an_object_is_400(daemon: Daemon, body: Any) -> None:
    code, data = daemon.json("POST", "/v1/submit", json.dumps(body).encode())
    assert (code, error_of(data)["type"]) == (400, "InvalidAction")


def test_handler_error_is_500_job_failed_without_traceback(daemon: Daemon) -> None:
    code, body = daemon.json("POST", "/v1/submit", {"type": "fail", "message": "no cheese"})
    err = error_of(body)
    assert code == 500
    assert (err["type"], err["remote_type"], err["remote_message"]) == (
        "JobFailed",
        "ValueError",
        "no cheese",
    )
    assert "remote_traceback" not in err


def test_deadline_is_504_job_timeout(daemon: Daemon, tmp_path: Path) -> None:
    action = {"type": "wait_file", "path": str(tmp_path / "never")}
    code, body = daemon.json("POST", "/v1/submit", action, headers={"Qoper8-Timeout": "0.2"})
    assert (code, error_of(body)["type"]) == (504, "JobTimeout")
    daemon.wait_ready()  # the killed child is replaced


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_bad_timeout_header_is_400(daemon: Daemon, value: str) -> None:
    code, body = daemon.json(
        "POST", "/v1/submit", {"type": "echo"}, headers={"Qoper8-Timeout": value}
    )
    assert (code, error_of(body)["type"]) == (400, "InvalidAction")


def test_child_death_is_502_child_died(daemon: Daemon) -> None:
    code, body = daemon.json("POST", "/v1/submit", {"type": "die", "code": 7})
    err = error_of(body)
    assert (code, err["type"], err["exitcode"]) == (502, "ChildDied", 7)
    daemon.wait_ready()


def test_unknown_path_is_404_json(daemon: Daemon) -> None:
    code, body = daemon.json("GET", "/v2/nothing")
    assert code == 404
    assert error_of(body)["type"] == "NotFound"


def test_wrong_method_is_405_json(daemon: Daemon) -> None:
    code, body = daemon.json("GET", "/v1/submit")
    assert code == 405
    assert error_of(body)["type"] == "MethodNotAllowed"


@pytest.mark.parametrize("body", [{}, {"children": "three"}, {"children": True}, [3]])
def test_bad_resize_body_is_400(daemon: Daemon, body: Any) -> None:
    code, data = daemon.json("POST", "/v1/resize", body)
    assert code == 400, data


def test_resize_to_zero_is_422_config_error(daemon: Daemon) -> None:
    code, data = daemon.json("POST", "/v1/resize", {"children": 0})
    assert (code, error_of(data)["type"]) == (422, "ConfigError")


async def test_resize_and_reload_endpoints(daemon: Daemon) -> None:
    async with daemon.client() as client:
        before = await client.status()
        assert daemon.json("POST", "/v1/resize", {"children": 3})[1]["children"] == 3
        await wait_status(client, lambda s: settled(s, 3), daemon=daemon, what="3 children")
        assert daemon.json("POST", "/v1/resize", {"delta": -1})[1]["children"] == 2
        await wait_status(client, lambda s: settled(s, 2), daemon=daemon, what="2 children")
        code, body = daemon.json("POST", "/v1/reload", {})
        assert (code, body["generation"]) == (200, before["generation"] + 1)
        status = await wait_status(
            client,
            lambda s: settled(s, 2, before["generation"] + 1),
            daemon=daemon,
            what="the new generation alone",
        )
        old_pids = {c["pid"] for c in before["children"]}
        assert not old_pids & {c["pid"] for c in status["children"]}


async def test_a_reload_whose_caller_hangs_up_still_runs(daemon: Daemon) -> None:
    async with daemon.client() as client:
        before = await client.status()
        _reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()  # gone before the answer
        await wait_status(
            client,
            lambda s: settled(s, 2, before["generation"] + 1),
            daemon=daemon,
            what="the reload done all the same",
        )
        assert await client.submit({"type": "add", "a": 2, "b": 2}) == 4
        assert "crashed" not in daemon.log_text()


# ==================================================================== limits and security


async def test_token_body_limit_and_debug_tracebacks(tmp_path: Path) -> None:
    with running(tmp_path, "--debug", "--max-body-bytes", "1024", children=1, token="s3cret") as d:
        # 401: no token, a wrong one, another scheme; every endpoint
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            for method, path in (
                ("GET", "/v1/status"),
                ("POST", "/v1/submit"),
                ("GET", "/metrics"),
            ):
                hdrs = {"Authorization": "", **headers}
                code, body = d.json(method, path, {"type": "echo"}, headers=hdrs)
                assert code == 401, (headers, path)
                assert error_of(body)["type"] == "Unauthorized"
        assert d.json("POST", "/v1/submit", {"type": "echo", "value": 1}) == (200, {"result": 1})
        # 413: over the limit, with a declared length
        big = {"type": "echo", "value": "x" * 2000}
        code, body = d.json("POST", "/v1/submit", big)
        assert (code, error_of(body)["type"]) == (413, "InvalidAction")
        # at the limit is fine
        exact = b'{"type":"echo","value":"' + b"y" * (1024 - 26) + b'"}'
        assert len(exact) == 1024
        assert d.json("POST", "/v1/submit", exact)[0] == 200
        # --debug: the child's traceback comes with JobFailed
        code, body = d.json("POST", "/v1/submit", {"type": "fail"})
        assert code == 500
        assert "raise ValueError(message)" in error_of(body)["remote_traceback"]


async def test_body_over_the_limit_without_a_length_is_413(tmp_path: Path) -> None:
    with running(tmp_path, "--max-body-bytes", "1024", children=1) as d:
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        chunk = b"x" * 4096
        writer.write(
            b"POST /v1/submit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"InvalidAction" in answer


async def test_queue_full_is_503_with_retry_after(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with running(tmp_path, "--max-queue", "1", children=1) as d:
        async with d.client() as client:
            hold = {"type": "wait_file", "path": str(release), "value": "done"}
            first = asyncio.create_task(client.submit(hold))
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="a running job")
            second = asyncio.create_task(client.submit(hold))
            await wait_status(
                client, lambda s: s["queue_length"] == 1, daemon=d, what="a queued job"
            )
            code, headers, body = await asyncio.to_thread(
                d.http, "POST", "/v1/submit", b'{"type": "echo"}'
            )
            assert code == 503
            assert headers["Retry-After"] == "1"
            assert b'"QueueFull"' in body
            release.touch()
            assert await first == "done"
            assert await second == "done"
            assert (await client.status())["rejected"] == 1


async def test_health_is_503_while_a_child_starts(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running(tmp_path, children=1, env={"TEST_QOPER8_START_GATE": str(gate)}) as d:
        async with d.client() as client:
            gate.touch()  # the next child blocks in its start hook until the gate goes
            d.signal(signal.SIGTTIN)

            async def starting() -> bool:
                health = await client.health()
                return bool(health["status"] == "starting")

            await wait_until(starting, daemon=d, what="health to say starting")
            assert d.json("GET", "/v1/health") == (
                503,
                {"status": "starting", "ready": 1, "target": 2},
            )
            gate.unlink()

            async def ready() -> bool:
                return bool((await client.health())["status"] == "ready")

            await wait_until(ready, daemon=d, what="health to say ready")
            assert d.json("GET", "/v1/health") == (
                200,
                {"status": "ready", "ready": 2, "target": 2},
            )


# ==================================================================== signals


def test_signal_table_maps_each_signal_to_its_action(tmp_path: Path) -> None:
    master = DaemonMaster(load_config(overrides={"worker": HANDLERS, "children": 1}))
    assert master.actions == {
        signal.SIGTERM: master.drain,
        signal.SIGINT: master.stop_fast,
        signal.SIGQUIT: master.stop_fast,
        signal.SIGHUP: master.reload_logged,
        signal.SIGTTIN: master.sizing.grow,
        signal.SIGTTOU: master.sizing.shrink,
        signal.SIGWINCH: master.pause,
        signal.SIGUSR1: master.reopen_logs,
        signal.SIGUSR2: master.start_upgrade,
    }


async def test_dispatcher_actions_run_in_process(tmp_path: Path) -> None:
    """The first level: call the signal actions directly, no real signal, no subprocess."""
    master = DaemonMaster(load_config(environ={}, overrides={"worker": HANDLERS, "children": 1}))
    await master.pool.start()
    try:
        await master.actions[signal.SIGTTIN]()
        assert master.pool.size == 2
        await master.actions[signal.SIGTTOU]()
        await master.actions[signal.SIGTTOU]()
        assert master.pool.size == 1
        await master.actions[signal.SIGHUP]()
        assert master.pool.generation == 2
        await master.actions[signal.SIGUSR1]()  # no log file: nothing to reopen
        await master.actions[signal.SIGTERM]()
        assert master.draining
        assert not master.pool.is_open
    finally:
        await master.pool.aclose(grace=0)


async def test_ttin_and_ttou_under_load_fail_no_request(tmp_path: Path) -> None:
    with running(tmp_path, children=2) as d:
        async with d.client() as client:
            load = Load(d).start()
            try:
                await load.wait_ok(50)
                d.signal(signal.SIGTTIN)
                await wait_status(client, lambda s: settled(s, 3), daemon=d, what="3 children")
                d.signal(signal.SIGTTIN)
                await wait_status(client, lambda s: settled(s, 4), daemon=d, what="4 children")
                d.signal(signal.SIGTTOU)
                await wait_status(client, lambda s: settled(s, 3), daemon=d, what="3 children")
                d.signal(signal.SIGTTOU)
                await wait_status(client, lambda s: settled(s, 2), daemon=d, what="2 children")
                await load.wait_ok(load.ok + 50)
            finally:
                await load.stop()
            assert load.failures == []
            assert load.ok >= 100


async def test_ttou_never_goes_below_one_child(tmp_path: Path) -> None:
    with running(tmp_path, children=1) as d:
        d.signal(signal.SIGTTOU)

        async def acted() -> bool:
            return "resized to 1 child\n" in d.log_text()

        # The kernel delivers pending signals lowest number first (TTIN before TTOU), so
        # wait for TTOU to be handled before sending TTIN.
        await wait_until(acted, daemon=d, what="TTOU handled")
        async with d.client() as client:
            assert settled(await client.status(), 1)
            d.signal(signal.SIGTTIN)
            await wait_status(client, lambda s: settled(s, 2), daemon=d, what="2 children")


async def test_hup_under_load_starts_a_new_generation_and_fails_no_request(tmp_path: Path) -> None:
    with running(tmp_path, children=2) as d:
        async with d.client() as client:
            before = await client.status()
            load = Load(d).start()
            try:
                await load.wait_ok(50)
                for generation in (2, 3):
                    d.signal(signal.SIGHUP)
                    await wait_status(
                        client,
                        lambda s, g=generation: settled(s, 2, g),  # type: ignore[misc]
                        daemon=d,
                        what=f"generation {generation} alone",
                    )
                    await load.wait_ok(load.ok + 20)
            finally:
                await load.stop()
            after = await client.status()
            assert load.failures == []
            old = {c["pid"] for c in before["children"]}
            assert not old & {c["pid"] for c in after["children"]}
            assert after["failed"] == after["died"] == after["timed_out"] == 0


async def test_hup_rereads_the_config_file(tmp_path: Path) -> None:
    def settings(*lines: str, worker: str = HANDLERS) -> None:
        write_toml(tmp_path / "qoper8.toml", [f'worker = "{worker}"', *lines])

    settings("children = 1", 'token = "one"')
    d = Daemon(tmp_path, "--config", str(tmp_path / "qoper8.toml"), children=1)
    # flags would win over the file; drop --worker and --children for this test
    for flag in ("--worker", "--children"):
        i = d.args.index(flag)
        del d.args[i : i + 2]
    d.token = "one"  # from the file
    d.start()
    try:
        d.wait_ready()
        # new size, new token, new worker module: all in force once generation 2 is ready
        settings("children = 3", 'token = "two"', worker=OTHER_HANDLERS)
        d.signal(signal.SIGHUP)
        d.token = "two"
        async with d.client() as client:

            async def reloaded() -> bool:
                try:
                    return settled(await client.status(), 3, 2)
                except TransportError:  # 401 until the new settings are in force
                    return False

            await wait_until(reloaded, daemon=d, what="3 children of generation 2")
            status = await client.status()
            assert status["worker"] == OTHER_HANDLERS
            assert "kill_self" in status["handlers"]
            assert "wait_file" not in status["handlers"]
            code, _ = d.json("GET", "/v1/status", headers={"Authorization": "Bearer one"})
            assert code == 401  # the old token is refused
            # A bad file on HUP: logged and refused; the daemon keeps its settings and serves.
            settings("children = -4", 'token = "three"')
            d.signal(signal.SIGHUP)

            async def refused() -> bool:
                return "reload refused" in d.log_text()

            await wait_until(refused, daemon=d, what="the refusal in the log")
            assert "children (config file" in d.log_text()
            status = await client.status()
            assert settled(status, 3, 2)
            assert await client.submit({"type": "add", "a": 1, "b": 1}) == 2
    finally:
        d.stop()


async def test_term_lets_jobs_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    release = tmp_path / "release"
    d = Daemon(tmp_path, children=2).start()
    try:
        d.wait_ready()
        async with d.client() as client:
            jobs = [
                asyncio.create_task(
                    client.submit({"type": "wait_file", "path": str(release), "value": i})
                )
                for i in range(4)
            ]
            await wait_status(
                client,
                lambda s: s["running"] == 2 and s["queue_length"] == 2,
                daemon=d,
                what="2 running and 2 queued jobs",
            )
            d.signal(signal.SIGTERM)
            await wait_status(client, lambda s: s["draining"], daemon=d, what="draining")
            assert d.json("GET", "/v1/health")[1]["status"] == "draining"
            code, body = d.json("POST", "/v1/submit", {"type": "echo"})
            assert (code, error_of(body)["type"]) == (503, "PoolClosed")
            release.touch()
            assert await asyncio.gather(*jobs) == [0, 1, 2, 3]
        assert d.wait_exit() == 0
        assert not d.pidfile.exists()
        d.wait_group_gone()
    finally:
        d.stop()


async def test_term_grace_period_ends_jobs_that_do_not_finish(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "--grace", "0.3", children=1).start()
    try:
        d.wait_ready()
        async with d.client() as client:
            job = asyncio.create_task(
                client.submit({"type": "wait_file", "path": str(tmp_path / "never")})
            )
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="a running job")
            d.signal(signal.SIGTERM)
            with pytest.raises(PoolClosed):
                await job
        assert d.wait_exit() == 0
    finally:
        d.stop()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT])
async def test_int_and_quit_stop_fast(tmp_path: Path, signum: signal.Signals) -> None:
    d = Daemon(tmp_path, children=1).start()
    try:
        d.wait_ready()
        async with d.client() as client:
            job = asyncio.create_task(
                client.submit({"type": "wait_file", "path": str(tmp_path / "never")})
            )
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="a running job")
            d.signal(signum)
            with pytest.raises(PoolClosed):
                await job
        assert d.wait_exit() == 0
        assert not d.pidfile.exists()
    finally:
        d.stop()


async def test_term_interrupts_a_reload_waiting_for_slow_children(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    d = Daemon(tmp_path, children=1, env={"TEST_QOPER8_START_GATE": str(gate)}).start()
    try:
        d.wait_ready()
        async with d.client() as client:
            gate.touch()  # children started from now on block in their start hook
            d.signal(signal.SIGHUP)
            await wait_status(
                client,
                lambda s: any(c["state"] == "starting" for c in s["children"]),
                daemon=d,
                what="a new child stuck starting",
            )
            d.signal(signal.SIGTERM)
            assert d.wait_exit() == 0  # long before start_timeout (60 s)
            assert "SIGHUP interrupted" in d.log_text()
        d.wait_group_gone()
    finally:
        d.stop()


async def test_usr1_reopens_the_log_file(tmp_path: Path) -> None:
    with running(tmp_path, children=1) as d:
        rotated = tmp_path / "qoper8.log.1"
        d.log.rename(rotated)
        d.signal(signal.SIGUSR1)

        async def reopened() -> bool:
            return "log file reopened" in d.log_text()

        await wait_until(reopened, daemon=d, what="a new log file")
        assert "ready:" in rotated.read_text()
        assert "ready:" not in d.log_text()


# ==================================================================== Redis mode hook

REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.mark.redis
async def test_serve_with_redis_consumes_the_queue_and_stops_on_term(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    pytest.importorskip("qoper8._redis.consumer")
    try:
        probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        probe.ping()
        probe.close()
    except (redis.RedisError, OSError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no Redis at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    queue = f"serve{uuid.uuid4().hex[:8]}"
    d = Daemon(tmp_path, "--redis", REDIS_URL, "--queue", queue, children=1).start()
    try:
        d.wait_ready()
        async with qoper8.RedisPool(REDIS_URL, queue=queue, timeout=20) as remote:
            assert await remote.submit({"type": "add", "a": 40, "b": 2}) == 42
        assert "consuming Redis queue" in d.log_text()
        d.signal(signal.SIGTERM)
        assert d.wait_exit() == 0
    finally:
        d.stop()
        cleanup = redis.Redis.from_url(REDIS_URL)
        keys = list(cleanup.scan_iter(f"*{queue}*"))
        if keys:
            cleanup.delete(*keys)
        cleanup.close()


# ==================================================================== pure parts


def test_metrics_text_is_well_formed_prometheus() -> None:
    import re

    from qoper8._daemon.metrics import render_metrics
    from qoper8._engine.stats import (
        ChildStatistics,
        Histogram,
        Percentiles,
        PoolStatistics,
    )

    hist = Histogram(((0.001, 2), (0.01, 5), (1.0, 7)), 8, 3.5)
    none = Percentiles(0, None, None, None, None)
    child = ChildStatistics(1, 42, 1, "busy", 3, 1.0, 0.5, None)
    stats = PoolStatistics(
        children=(child,), target_size=1, generation=1, queue_length=2, running=1,
        submitted=11, completed=7, failed=1, invalid=1, timed_out=0, died=1, cancelled=0,
        recycled=0, rejected=3, queue_wait=none, run_time=none,
        queue_wait_histogram=hist, run_time_histogram=hist,
    )  # fmt: skip
    text = render_metrics(stats)
    sample = re.compile(r'^[a-z_][a-z0-9_]*(\{[a-z_]+="[^"]*"\})? -?[0-9.e+-]+$')
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif not line.startswith("# HELP "):
            assert sample.match(line), line
            base = re.sub(r"_(bucket|sum|count)$", "", line.split("{")[0].split()[0])
            assert base in typed, f"{line} has no # TYPE before it"
    assert 'qoper8_jobs_total{outcome="rejected"} 3' in text
    assert 'qoper8_children{state="busy"} 1' in text
    assert 'qoper8_children{state="idle"} 0' in text
    assert 'qoper8_run_time_seconds_bucket{le="0.001"} 2' in text
    assert 'qoper8_run_time_seconds_bucket{le="+Inf"} 8' in text
    assert "qoper8_run_time_seconds_sum 3.5" in text
    assert text.endswith("\n")


def test_each_error_has_its_status() -> None:
    from qoper8 import errors
    from qoper8._daemon.http_api import status_for

    expected = {
        errors.InvalidAction("x"): 422,
        errors.QueueFull("x"): 503,
        errors.PoolClosed("x"): 503,
        errors.StartFailed("x"): 503,
        errors.JobTimeout("x"): 504,
        errors.JobFailed("x", remote_type="E", remote_message="m"): 500,
        errors.ChildDied("x"): 502,
        errors.ConfigError("x"): 422,
        errors.TransportError("x"): 502,
        errors.Qoper8Error("x"): 500,
    }
    assert {type(e).__name__: status_for(e) for e in expected} == {
        type(e).__name__: s for e, s in expected.items()
    }


async def test_int_during_a_term_drain_stops_at_once(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "--grace", "60", children=1).start()
    try:
        d.wait_ready()
        async with d.client() as client:
            job = asyncio.create_task(
                client.submit({"type": "wait_file", "path": str(tmp_path / "never")})
            )
            await wait_status(client, lambda s: s["running"] == 1, daemon=d, what="a running job")
            d.signal(signal.SIGTERM)
            await wait_status(client, lambda s: s["draining"], daemon=d, what="draining")
            d.signal(signal.SIGINT)
            with pytest.raises(PoolClosed):
                await job
        assert d.wait_exit() == 0  # long before the 60 s grace period
        d.wait_group_gone()
    finally:
        d.stop()


async def test_daemon_exits_3_when_children_keep_failing_to_start(tmp_path: Path) -> None:
    d = Daemon(
        tmp_path,
        "--worker",
        "tests.bad_workers.dies_after_ready:worker",
        children=1,
        env={"QOPER8_MAX_START_FAILURES": "2"},
    ).start()
    try:
        assert d.wait_exit() == 3
        assert "keep failing to start" in d.log_text()
        d.wait_group_gone()
    finally:
        d.stop()
