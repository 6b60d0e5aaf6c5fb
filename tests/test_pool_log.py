"""What the pool logs when something goes wrong (issue 9, item 4): one WARNING per fault,
with the child, its pid and the job as fields a JSON log can carry."""

from __future__ import annotations

import logging
import signal

import pytest

import qoper8


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "qoper8"]


async def test_a_child_dying_mid_job_is_logged_with_its_fields(
    pool: qoper8.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qoper8")
    with pytest.raises(qoper8.ChildDied) as info:
        await pool.submit({"type": "kill_self"})
    (record,) = _warnings(caplog)
    fields = record.__dict__
    assert fields["job_id"] == info.value.job_id
    assert fields["action_type"] == "kill_self"
    assert fields["pid"] == info.value.pid
    assert fields["signal"] == signal.SIGKILL
    assert isinstance(fields["child"], int)
    text = record.getMessage()
    assert "killed by SIGKILL" in text
    assert f"while running job {info.value.job_id} (kill_self)" in text


async def test_a_timeout_kill_is_logged_once(
    pool: qoper8.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qoper8")
    with pytest.raises(qoper8.JobTimeout) as info:
        await pool.submit({"type": "hang"}, timeout=0.2)
    await pool.wait_idle()
    (record,) = _warnings(caplog)  # the kill's own exit is not logged a second time
    assert record.__dict__["job_id"] == info.value.job_id
    assert record.__dict__["action_type"] == "hang"
    assert "ran past its deadline of 0.2s: killing child" in record.getMessage()


async def test_an_idle_child_killed_from_outside_is_logged(
    pool: qoper8.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    from tests.conftest import wait_until

    caplog.set_level(logging.INFO, logger="qoper8")
    # The one that served a job: it is not a failed start however soon it dies.
    pid = await pool.submit({"type": "pid"})
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: bool(_warnings(caplog)), what="the warning")
    (record,) = _warnings(caplog)
    assert record.__dict__["pid"] == pid
    assert "while idle" in record.getMessage()


async def test_a_handler_that_raises_is_a_warning_and_its_traceback_is_debug(
    pool: qoper8.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qoper8")
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.submit({"type": "raise_error", "message": "no cheese"})
    (record,) = _warnings(caplog)
    assert record.__dict__["job_id"] == info.value.job_id
    assert record.__dict__["action_type"] == "raise_error"
    assert record.__dict__["remote_type"] == "ValueError"
    assert "ValueError: no cheese" in record.getMessage()
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "traceback" in r.msg]
    assert len(debug) == 1
    assert "raise ValueError(message)" in debug[0].getMessage()


async def test_an_unknown_action_type_says_what_was_meant(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.InvalidAction, match=r"did you mean 'echo'\?"):
        await pool.submit({"type": "ecoh"})
