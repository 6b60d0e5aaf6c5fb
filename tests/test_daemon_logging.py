"""The daemon's log says what went wrong: JSON lines (``--log-format json``), an access log
(``--access-log``), tracebacks with ``--debug``, and a USR1 reopen that keeps the order of
records.

The pool's own fault records (a child dying mid-job, a timeout kill, a handler raising)
are the pool's to write; what this file checks is that the daemon's log carries them, their
``extra=`` fields and their tracebacks, in both formats.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

import pytest

from qoper8._config_sources import load_config
from qoper8._daemon.log import DaemonLog
from qoper8._engine.output import NonBlockingLog
from tests.daemon_support import HANDLERS, running, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from tests.daemon_support import Daemon

pytestmark = pytest.mark.timeout(60)

JSON_KEYS = {"time", "level", "logger", "message", "pid"}


def records(d: Daemon) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed (a line that is not JSON fails the test)."""
    lines = d.log_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    for record in parsed:
        assert set(record) >= JSON_KEYS, record
    return parsed


async def test_json_log_lines_with_access_log_and_child_fields(tmp_path: Path) -> None:
    with running(tmp_path, "--log-format", "json", "--access-log", children=1, token="tok") as d:
        assert d.json("POST", "/v1/submit", {"type": "say", "text": "hello from a child"}) == (
            200,
            {"result": None},
        )
        assert d.json("GET", "/v1/nothing")[0] == 404

        def said() -> bool:
            return any(r.get("message", "").endswith("hello from a child") for r in records(d))

        async def logged() -> bool:
            return said() and any(r.get("status") == 404 for r in records(d))

        await wait_until(logged, daemon=d, what="the child's line and the access lines")
        log = records(d)
        ready = next(r for r in log if r["message"].startswith("ready:"))
        assert (ready["level"], ready["logger"], ready["pid"]) == ("INFO", "qoper8.daemon", d.pid)
        assert ready["time"].endswith("+00:00")
        assert f", 1 child of {HANDLERS!r}" in ready["message"]  # not "1 children"
        line = next(r for r in log if r["message"].endswith("hello from a child"))
        assert line["child"] == 1
        assert isinstance(line["child_pid"], int)
        assert line["child_pid"] != d.pid
        access = [r for r in log if r["logger"] == "qoper8.access"]
        submit = next(r for r in access if r["path"] == "/v1/submit")
        assert (submit["method"], submit["status"], submit["remote"]) == (
            "POST",
            200,
            "127.0.0.1",
        )
        assert submit["bytes"] == len(b'{"result":null}')
        assert submit["duration"] >= 0
        assert any(r["path"] == "/v1/nothing" and r["status"] == 404 for r in access)


async def test_the_access_log_is_off_by_default_and_a_text_line_when_on(tmp_path: Path) -> None:
    off, on = tmp_path / "off", tmp_path / "on"
    off.mkdir()
    on.mkdir()
    with running(off, children=1) as d:
        d.json("POST", "/v1/submit", {"type": "echo", "value": 1})
        d.json("GET", "/v1/status")
        assert "qoper8.access" not in d.log_text()
    with running(on, "--access-log", children=1) as d:
        d.json("POST", "/v1/submit", {"type": "echo", "value": 1})

        async def logged() -> bool:
            return '"POST /v1/submit" 200' in d.log_text()

        await wait_until(logged, daemon=d, what="an access line")
        line = next(x for x in d.log_text().splitlines() if '"POST /v1/submit" 200' in x)
        assert "INFO qoper8.access: 127.0.0.1 " in line
        assert line.endswith("s")  # the duration
        assert not line.lstrip().startswith("{")


async def test_a_failed_job_is_a_warning_with_its_fields_and_debug_adds_the_traceback(
    tmp_path: Path,
) -> None:
    with running(tmp_path, "--log-format", "json", "--debug", children=1) as d:
        d.json("POST", "/v1/submit", {"type": "fail", "message": "no cheese"})

        async def logged() -> bool:
            return "raise ValueError(message)" in d.log_text()

        await wait_until(logged, daemon=d, timeout=5, what="the handler's traceback")
        warning = next(
            r for r in records(d) if r["level"] == "WARNING" and r.get("action_type") == "fail"
        )
        assert isinstance(warning["job_id"], int)
        assert isinstance(warning["child_pid"], int)


# ==================================================================== in process


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _fail() -> None:
    raise ZeroDivisionError("the child's handler divided by zero")


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("debug", [True, False])
def test_debug_shows_tracebacks_and_extra_fields_in_both_formats(
    tmp_path: Path, log_format: str, debug: bool
) -> None:
    """A record as the pool writes one: a WARNING with the job's fields, the traceback at
    DEBUG. ``--debug`` lets the DEBUG one through; JSON gives fields and traceback keys."""
    log_file = tmp_path / "q.log"
    config = load_config(
        environ={},
        overrides={
            "worker": HANDLERS,
            "log_file": log_file,
            "log_format": log_format,
            "debug": debug or None,
        },
    )
    log = DaemonLog()
    log.setup(config)
    pool_logger = logging.getLogger("qoper8.pool")
    fields = {"child": 2, "pid": 4321, "job_id": 17, "action_type": "user.get", "exitcode": None}
    try:
        pool_logger.warning("job 17 (user.get) failed in child 2: ZeroDivisionError", extra=fields)
        try:
            _fail()
        except ZeroDivisionError:
            pool_logger.debug("the traceback of job 17", exc_info=True, extra=fields)
    finally:
        log.close()
    text = log_file.read_text()
    assert ("the child's handler divided by zero" in text) is debug
    assert ("the traceback of job 17" in text) is debug
    if log_format == "text":
        assert "WARNING qoper8.pool: job 17 (user.get) failed in child 2" in text
        return
    lines = [json.loads(line) for line in text.splitlines()]
    warning = lines[0]
    assert warning["level"] == "WARNING"
    assert {k: warning[k] for k in ("child", "child_pid", "job_id", "action_type")} == {
        "child": 2,
        "child_pid": 4321,
        "job_id": 17,
        "action_type": "user.get",
    }
    assert warning["exitcode"] is None
    assert "traceback" not in warning
    if debug:
        assert lines[1]["level"] == "DEBUG"
        assert lines[1]["traceback"].startswith("Traceback (most recent call last):")
        assert "ZeroDivisionError: the child's handler divided by zero" in lines[1]["traceback"]
        assert lines[1]["message"] == "the traceback of job 17"


class _Gated(logging.Handler):
    """Writes nothing until the test opens the gate: records pile up in the queue."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.events: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.gate.wait(10)
        self.events.append(record.getMessage())


def test_an_operation_runs_between_the_records_logged_before_and_after_it() -> None:
    """USR1's reopen goes through the log's own queue: a record logged before it never lands
    in the new file, however far behind the writer is (it was done on the loop's thread)."""
    logger = logging.getLogger("qoper8.test.in_order")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = _Gated()
    log = NonBlockingLog(logger, handler)
    try:
        for i in range(3):
            logger.info("before %d", i)
        log.call_in_order(lambda: handler.events.append("REOPEN"))
        logger.info("after")
        handler.gate.set()
    finally:
        assert log.close()
    assert handler.events == ["before 0", "before 1", "before 2", "REOPEN", "after"]


def test_an_operation_is_never_dropped_when_the_queue_is_full() -> None:
    logger = logging.getLogger("qoper8.test.full")
    logger.propagate = False
    handler = _Gated()
    log = NonBlockingLog(logger, handler, max_pending=2)
    try:
        for i in range(10):
            logger.warning("record %d", i)
        log.call_in_order(lambda: handler.events.append("REOPEN"))
        handler.gate.set()
    finally:
        assert log.close()
    assert "REOPEN" in handler.events
    assert log.queue_handler.dropped > 0


async def test_usr1_puts_every_earlier_record_in_the_rotated_file(tmp_path: Path) -> None:
    with running(tmp_path, children=1) as d:
        for i in range(50):
            d.json("POST", "/v1/submit", {"type": "say", "text": f"line {i}"})

        async def all_said() -> bool:  # a child's output comes apart from its result
            return "line 49" in d.log_text()

        await wait_until(all_said, daemon=d, what="the children's lines")
        rotated = tmp_path / "qoper8.log.1"
        d.log.rename(rotated)
        d.signal(signal.SIGUSR1)

        async def reopened() -> bool:
            return "log file reopened" in d.log_text()

        await wait_until(reopened, daemon=d, what="a new log file")
        assert "line 49" in rotated.read_text()
        assert "line " not in d.log_text()
        assert "ready:" not in d.log_text()


def test_json_lines_survive_hostile_text(tmp_path: Path) -> None:
    """A message with newlines, quotes and undecodable bytes is still one JSON line."""
    config = load_config(
        environ={},
        overrides={"worker": HANDLERS, "log_file": tmp_path / "q.log", "log_format": "json"},
    )
    log = DaemonLog()
    log.setup(config)
    try:
        logging.getLogger("qoper8.http").warning(
            "odd %s", 'a "quoted"\nline \udcff', extra={"path": "/x\udcff", "obj": object()}
        )
    finally:
        log.close()
    (line,) = (tmp_path / "q.log").read_text().splitlines()
    record = json.loads(line)
    assert record["message"].startswith('odd a "quoted"\nline ')
    assert record["obj"].startswith("<object object")
