"""The child's error reports stay small whatever the exception holds, and always fit the
channel: a report over max_message_bytes would get its child killed."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qoper8._engine import reports as _reports
from qoper8._engine.reports import MAX_REPORTED_ERRORS, error_report
from qoper8._engine.worker import ActionRefused
from qoper8.errors import ErrorEntry, HandlerError


def _deep(depth: int) -> BaseException:
    """An exception at the end of a chain of ``depth`` others, each with a long message: a
    traceback far over the limit (repeated frames would be folded by ``traceback``)."""
    exc: BaseException | None = None
    for i in range(depth):
        try:
            raise ValueError(f"level {i} " + "p" * 500) from exc
        except ValueError as caught:
            exc = caught
    try:
        raise RuntimeError("bottom of a deep stack") from exc
    except RuntimeError as last:
        return last


def test_a_huge_message_is_clipped_and_says_so() -> None:
    report = orjson.loads(error_report("failed", ValueError("x" * 10_000_000), limit=1 << 26))
    assert len(report["message"]) < _reports.MAX_MESSAGE_CHARS + 100
    assert report["message"].endswith(
        f"({10_000_000 - _reports.MAX_MESSAGE_CHARS} more characters)"
    )
    assert len(report["traceback"]) < _reports.MAX_TRACEBACK_CHARS + 100


def test_a_deep_traceback_keeps_its_head_and_its_tail() -> None:
    report = orjson.loads(error_report("failed", _deep(600), limit=1 << 26))
    tb = report["traceback"]
    assert len(tb) < _reports.MAX_TRACEBACK_CHARS + 100
    assert tb.startswith("Traceback (most recent call last):")
    assert "characters cut" in tb
    assert tb.rstrip().endswith("RuntimeError: bottom of a deep stack")


def test_entries_are_counted_clipped_and_capped() -> None:
    entries: list[ErrorEntry] = _reports.error_entries(
        [{"loc": ("k" * 10_000, *range(50)), "msg": "m" * 10_000, "type": "t"}] * 100
    )
    assert len(entries) == MAX_REPORTED_ERRORS
    first = entries[0]
    assert len(first["loc"]) == _reports.MAX_LOC_PARTS + 1
    assert first["loc"][-1] == "..."
    assert len(str(first["loc"][0])) < _reports.MAX_LOC_CHARS + 50
    assert len(first["msg"]) < _reports.MAX_ENTRY_CHARS + 50
    refused = ActionRefused("bad", entries * 5, errors_total=250_000)
    report = orjson.loads(error_report("invalid", refused, limit=1 << 26))
    assert len(report["errors"]) == MAX_REPORTED_ERRORS
    assert report["errors_omitted"] == 250_000 - MAX_REPORTED_ERRORS
    assert "traceback" not in report


def test_handler_error_fields_travel_and_bad_details_are_dropped() -> None:
    report = orjson.loads(
        error_report(
            "failed", HandlerError("m", status=404, code="nf", details={"a": 1}), limit=4096
        )
    )
    assert (report["status"], report["code"], report["details"]) == (404, "nf", {"a": 1})
    report = orjson.loads(
        error_report("failed", HandlerError("m", details={"a": b"bytes"}), limit=4096)  # type: ignore[dict-item]
    )
    assert report["details"] is None
    assert "its details were dropped: not JSON" in report["message"]
    big = HandlerError("m", details="d" * 100_000)
    report = orjson.loads(error_report("failed", big, limit=1 << 20))
    assert report["details"] is None
    assert "bytes encoded, over" in report["message"]


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_an_exception_whose_str_raises_still_reports() -> None:
    report = orjson.loads(error_report("failed", _BadStr(), limit=4096))
    assert report["type"] == "_BadStr"
    assert "__str__ raised RuntimeError" in report["message"]


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    message=st.text(min_size=0, max_size=20_000),
    limit=st.integers(min_value=1024, max_value=300_000),
    entries=st.integers(min_value=0, max_value=60),
    handler=st.booleans(),
)
def test_every_report_fits_the_channel(
    message: str, limit: int, entries: int, handler: bool
) -> None:
    errors: list[ErrorEntry] = [
        {"loc": [message[:5000], i], "msg": message, "type": "t" * 200} for i in range(entries)
    ]
    cases: list[BaseException] = [
        ValueError(message * 3),
        ActionRefused(message, errors, errors_total=entries),
        _deep(50),
    ]
    if handler:
        cases.append(HandlerError(message, status=404, code=message, details=[message] * 3))
    for exc in cases:
        for category in ("failed", "invalid"):
            payload = error_report(category, exc, limit=limit)
            assert len(payload) <= limit
            report = orjson.loads(payload)
            assert report["category"] == category
            assert isinstance(report["message"], str)


@pytest.mark.parametrize("limit", [1024, 1500, 4096])
def test_the_floor_fits_the_smallest_channel(limit: int) -> None:
    exc = ActionRefused("\U0001f600" * 50_000, [], errors_total=0)
    payload = error_report("invalid", exc, limit=limit)
    assert len(payload) <= limit
