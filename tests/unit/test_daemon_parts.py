"""Pure parts of the daemon's new rooms: the dashboard's history (points from histogram
differences, the error ring), role names, systemd's socket variables, inherited sockets and
the upgrade's ready pipe. No daemon, no child."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest

from qoper8._daemon.history import ERRORS_KEPT, MESSAGE_CHARS, History, quantile
from qoper8._daemon.listeners import SD_LISTEN_FDS_START, inherit, is_public, systemd_fds, url_of
from qoper8._daemon.status import DEFAULT_ROLE, health_body, role_name
from qoper8._daemon.upgrade import UPGRADE_VARIABLE, notify_ready, take_ready_fd
from qoper8._engine.stats import HISTOGRAM_BUCKETS, Histogram, Percentiles, PoolStatistics
from qoper8.errors import InvalidAction, JobFailed


def histogram(counts: dict[float, int]) -> Histogram:
    """A cumulative histogram with ``counts[bound]`` observations in the bucket ending at
    ``bound``."""
    running, buckets = 0, []
    for bound in HISTOGRAM_BUCKETS:
        running += counts.get(bound, 0)
        buckets.append((bound, running))
    return Histogram(tuple(buckets), running, 0.0)


NONE = Percentiles(0, None, None, None, None)
EMPTY = histogram({})


def stats(**changes: object) -> PoolStatistics:
    base = PoolStatistics(
        children=(), target_size=2, generation=1, queue_length=0, running=0,
        submitted=0, completed=0, failed=0, invalid=0, timed_out=0, died=0, cancelled=0,
        recycled=0, rejected=0, queue_wait=NONE, run_time=NONE,
        queue_wait_histogram=EMPTY, run_time_histogram=EMPTY,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_quantile_interpolates_inside_the_bucket_of_the_new_observations_only() -> None:
    before = histogram({0.0001: 100})  # old, fast jobs: not in this interval
    after = histogram({0.0001: 100, 0.0025: 10})  # ten new ones in (0.001, 0.0025]
    assert quantile(0.5, before, after) == pytest.approx(0.00175)
    assert quantile(0.99, before, after) == pytest.approx(0.001 + 0.0015 * 0.99)
    assert quantile(0.5, after, after) is None  # nothing new
    assert quantile(0.5, None, histogram({})) is None


def test_a_point_is_jobs_per_second_and_latency_of_that_interval() -> None:
    history = History()
    assert history.sample(stats(), now=100.0) is None  # the baseline
    point = history.sample(
        stats(
            completed=18, failed=2, invalid=1, queue_length=3, running=2,
            run_time_histogram=histogram({0.01: 20}),
        ),
        now=102.0,
    )  # fmt: skip
    assert point is not None
    assert point["throughput"] == 10.0  # 20 jobs ended in 2 s
    assert point["errors"] == 1.5  # 2 failed + 1 invalid
    assert (point["queue"], point["running"]) == (3, 2)
    assert 5.0 < point["run_p50_ms"] <= 10.0
    assert point["wait_p99_ms"] is None
    assert list(history.points) == [point]


def test_the_error_ring_keeps_the_last_errors_with_their_action_type() -> None:
    history = History()
    for i in range(ERRORS_KEPT + 5):
        history.record_error({"type": "user.get", "id": i}, InvalidAction(f"bad {i}"))
    failed = JobFailed("x" * (MESSAGE_CHARS * 2), remote_type="E", remote_message="x")
    history.record_error("not a mapping", failed)
    errors = list(history.errors)
    assert len(errors) == ERRORS_KEPT
    assert errors[0]["message"] == "bad 6"
    assert errors[-2]["action_type"] == "user.get"
    assert errors[-1]["action_type"] is None
    assert errors[-1]["error_type"] == "JobFailed"
    assert len(errors[-1]["message"]) == MESSAGE_CHARS
    seqs = [e["seq"] for e in errors]
    assert seqs == sorted(seqs)


def test_role_names_come_from_the_worker_module() -> None:
    assert role_name("workers.users:worker") == "users"
    assert role_name("tests.daemon_handlers") == "daemon_handlers"
    assert role_name(None) == DEFAULT_ROLE
    assert role_name("") == DEFAULT_ROLE


def test_a_paused_pool_is_not_healthy() -> None:
    paused = stats(target_size=0, paused=True)
    body = health_body(paused, is_open=True, degraded=False, draining=False, redis=None)
    assert body == {"status": "paused", "ready": 0, "target": 0}


def test_systemd_variables_count_only_for_this_process_and_are_removed() -> None:
    mine = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert systemd_fds(mine) == [SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + 1]
    assert mine == {}  # children of ours must not take them for theirs
    theirs = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert systemd_fds(theirs) == []
    assert theirs == {}
    assert systemd_fds({}) == []


def test_only_listening_stream_sockets_are_inherited() -> None:
    with socket.socket() as listening, socket.socket() as idle:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        (sock,) = inherit([os.dup(listening.fileno())])
        try:
            assert url_of(sock) == url_of(listening)
            assert not is_public(sock)
            assert not sock.get_inheritable()  # no child of ours holds it
        finally:
            sock.close()
        with pytest.raises(OSError, match="not a listening stream socket"):
            inherit([idle.fileno()])
        assert idle.fileno() >= 0  # left open: not ours to close
    r, w = os.pipe()
    try:
        with pytest.raises(OSError, match="is not a socket"):
            inherit([r])
    finally:
        os.close(r)
        os.close(w)


def test_a_new_master_reads_its_ready_pipe_once_and_writes_its_pid() -> None:
    r, w = os.pipe()
    os.set_inheritable(w, True)
    environ = {UPGRADE_VARIABLE: str(w)}
    fd = take_ready_fd(environ)
    assert fd == w
    assert environ == {}
    assert not os.get_inheritable(w)
    notify_ready(w)
    with os.fdopen(r, "rb") as pipe:
        assert pipe.read() == f"{os.getpid()}\n".encode()
    assert take_ready_fd({UPGRADE_VARIABLE: "junk"}) is None


def test_qoper8_status_says_when_the_pool_is_paused() -> None:
    from qoper8._daemon.cli_status import format_status

    assert "PAUSED" in format_status({"paused": True, "children": []}).splitlines()[0]
    assert "PAUSED" not in format_status({"paused": False, "children": []})
