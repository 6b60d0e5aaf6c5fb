"""Hostile input must not cost a child: an action whose validation fails 250,000 times, or a
handler error far larger than max_message_bytes, gives a small typed error, and the same
child serves the next job."""

from __future__ import annotations

import asyncio

import pytest

import qoper8
from qoper8._engine.reports import MAX_MESSAGE_CHARS, MAX_REPORTED_ERRORS

HANDLERS = "tests.json_handlers:worker"


async def test_250000_unknown_fields_are_invalid_action_not_child_died() -> None:
    action = {"type": "add", "a": 1, "b": 2, **{f"f{i}": i for i in range(250_000)}}
    async with asyncio.timeout(30), qoper8.Pool(HANDLERS, children=1) as pool:
        pid = await pool.submit({"type": "pid"})
        with pytest.raises(qoper8.InvalidAction) as info:
            await pool.submit(action)
        err = info.value
        assert len(err.errors) == MAX_REPORTED_ERRORS
        assert err.errors[0] == {
            "loc": ["f0"],
            "msg": "Extra inputs are not permitted",
            "type": "extra_forbidden",
        }
        assert err.errors_omitted == 250_000 - MAX_REPORTED_ERRORS
        assert len(str(err)) < 500
        assert "(and 249997 more errors)" in str(err)
        assert await pool.submit({"type": "pid"}) == pid, "the same child serves on"
        assert pool.statistics().died == 0


async def test_a_list_with_thousands_of_bad_items_gives_a_small_report() -> None:
    async with asyncio.timeout(30), qoper8.Pool(HANDLERS, children=1) as pool:
        pid = await pool.submit({"type": "pid"})
        with pytest.raises(qoper8.InvalidAction) as info:
            await pool.submit({"type": "ints", "values": ["x"] * 20_000})
        assert len(info.value.errors) == MAX_REPORTED_ERRORS
        assert info.value.errors[3]["loc"] == ["values", 3]
        assert info.value.errors_omitted == 20_000 - MAX_REPORTED_ERRORS
        assert await pool.submit({"type": "pid"}) == pid


@pytest.mark.parametrize(
    ("action", "limit"),
    [
        ({"type": "huge_error", "chars": 5_000_000}, 1 << 26),  # a 5 MB message
        ({"type": "huge_error", "chars": 5_000}, 4096),  # over a small channel
        ({"type": "deep_error", "depth": 400}, 8192),  # a 400 KB traceback
        ({"type": "add", "a": 1, "b": 2, "k" * 1500: 1, "j" * 1500: 2}, 4096),  # long names
    ],
    ids=["5MB-message", "small-channel", "deep-traceback", "long-field-names"],
)
async def test_a_report_over_the_limit_is_cut_to_fit_and_costs_no_child(
    action: dict[str, object], limit: int
) -> None:
    async with (
        asyncio.timeout(30),
        qoper8.Pool(HANDLERS, children=1, max_message_bytes=limit) as pool,
    ):
        pid = await pool.submit({"type": "pid"})
        with pytest.raises((qoper8.JobFailed, qoper8.InvalidAction)) as info:
            await pool.submit(action)
        assert len(str(info.value)) < MAX_MESSAGE_CHARS + 500
        assert await pool.submit({"type": "pid"}) == pid
        assert pool.statistics().died == 0


async def test_run_with_a_huge_exception_is_cut_to_fit_and_costs_no_child() -> None:
    from tests.json_handlers import raise_huge

    async with (
        asyncio.timeout(30),
        qoper8.Pool(HANDLERS, children=1, max_message_bytes=1 << 16) as pool,
    ):
        pid = await pool.submit({"type": "pid"})
        with pytest.raises(qoper8.JobFailed) as info:
            await pool.run(raise_huge, 1 << 20)
        assert info.value.remote_type == "ValueError"
        assert info.value.remote_exception is None, "too big to send back whole"
        assert len(info.value.remote_message) < MAX_MESSAGE_CHARS + 100
        assert await pool.submit({"type": "pid"}) == pid
        assert pool.statistics().died == 0
