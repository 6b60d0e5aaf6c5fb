"""Errors travel as data and come back as the same typed errors."""

from __future__ import annotations

import orjson

import qoper8
from qoper8.errors import (
    ChildDied,
    ErrorEntry,
    JobFailed,
    error_from_dict,
    error_to_dict,
    http_status,
)


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


def test_new_fields_round_trip_through_the_dict_form() -> None:
    failed = JobFailed(
        "f",
        job_id=9,
        remote_type="NotFound",
        remote_message="m",
        remote_types=("app.NotFound", "qoper8.errors.HandlerError", "builtins.Exception"),
        status=404,
        code="not_found",
        details={"id": [1, 2]},
    )
    back = error_from_dict(orjson.loads(orjson.dumps(error_to_dict(failed))))
    assert isinstance(back, JobFailed)
    assert back.remote_types == failed.remote_types
    assert (back.status, back.code, back.details) == (404, "not_found", {"id": [1, 2]})
    assert back.remote_is(qoper8.HandlerError)
    entries: list[ErrorEntry] = [{"loc": ["a", 0], "msg": "bad", "type": "int_parsing"}]
    invalid = qoper8.InvalidAction("bad", errors=entries, errors_omitted=4)
    back = error_from_dict(orjson.loads(orjson.dumps(error_to_dict(invalid))))
    assert isinstance(back, qoper8.InvalidAction)
    assert (back.errors, back.errors_omitted) == (entries, 4)
    result = qoper8.InvalidResult("r", job_id=1, result=[1], errors=entries)
    back = error_from_dict(error_to_dict(result))
    assert isinstance(back, qoper8.InvalidResult)
    assert back.errors == entries


def test_an_invalid_action_without_entries_gets_one_from_its_message() -> None:
    err = qoper8.InvalidAction("the body is not JSON")
    assert err.errors == [{"loc": [], "msg": "the body is not JSON", "type": "invalid_action"}]


def test_garbled_fields_from_the_network_are_dropped_not_raised() -> None:
    back = error_from_dict(
        {
            "type": "JobFailed",
            "message": "m",
            "remote_types": "not a list",
            "status": "404",
            "code": 7,
        }
    )
    assert isinstance(back, JobFailed)
    assert (back.remote_types, back.status, back.code) == ((), None, None)
    back = error_from_dict(
        {
            "type": "InvalidAction",
            "message": "m",
            "errors": [{"loc": "a", "msg": 1}, 5, {"loc": ["a", {}], "msg": "x", "type": "t"}],
            "errors_omitted": -3,
        }
    )
    assert isinstance(back, qoper8.InvalidAction)
    assert back.errors == [{"loc": ["a"], "msg": "x", "type": "t"}]
    assert back.errors_omitted == 0


def test_http_status_maps_every_error_and_a_chosen_status() -> None:
    def failed(status: object) -> JobFailed:
        return JobFailed("x", remote_type="E", remote_message="m", status=status)  # type: ignore[arg-type]

    assert http_status(failed(404)) == 404
    assert http_status(failed(None)) == 500
    assert http_status(failed(399)) == 500
    assert http_status(failed(600)) == 500
    assert http_status(failed(True)) == 500
    assert http_status(qoper8.HandlerError("x", status=409)) == 409
    assert http_status(qoper8.InvalidAction("x")) == 422
    assert http_status(qoper8.InvalidResult("x")) == 500
    assert http_status(ChildDied("x")) == 502
    assert http_status(ValueError("not ours")) == 500


def test_remote_is_falls_back_to_the_short_name_for_old_data() -> None:
    err = JobFailed("x", remote_type="KeyError", remote_message="m")
    assert err.remote_is("KeyError")
    assert not err.remote_is(LookupError), "without remote_types no base is known"


def test_handler_error_pickles_with_its_fields() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(qoper8.HandlerError("m", status=404, code="c", details=[1])))
    assert (str(err), err.status, err.code, err.details) == ("m", 404, "c", [1])
