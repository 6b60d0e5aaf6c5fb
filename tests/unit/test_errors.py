"""Errors travel as data and come back as the same typed errors."""

from __future__ import annotations

import qoper8
from qoper8.errors import ChildDied, JobFailed, error_from_dict, error_to_dict


def test_every_error_round_trips_through_its_dict_form() -> None:
    errors: list[qoper8.Qoper8Error] = [
        qoper8.InvalidAction("bad"),
        qoper8.QueueFull("full"),
        qoper8.PoolClosed("closed"),
        qoper8.JobTimeout("late", job_id=3),
        JobFailed(
            "failed", job_id=4, remote_type="ValueError", remote_message="m", remote_traceback="tb"
        ),
        ChildDied("died", job_id=5, pid=123, exitcode=None, signal=9),
    ]
    for err in errors:
        back = error_from_dict(error_to_dict(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
    back = error_from_dict(error_to_dict(errors[4]))
    assert isinstance(back, JobFailed)
    assert back.remote_traceback == "tb"
    back = error_from_dict(error_to_dict(errors[5]))
    assert isinstance(back, ChildDied)
    assert (back.pid, back.signal) == (123, 9)


def test_unknown_error_types_become_transport_errors() -> None:
    assert isinstance(error_from_dict({"type": "os.system", "message": "x"}), qoper8.TransportError)
    assert isinstance(error_from_dict({}), qoper8.TransportError)


def test_traceback_can_be_withheld() -> None:
    err = JobFailed("f", remote_type="E", remote_message="m", remote_traceback="secret")
    assert "remote_traceback" not in error_to_dict(err, include_traceback=False)
