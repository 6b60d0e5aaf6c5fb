"""qoper8.testing.InlinePool runs handlers in-process with the pool's validation and errors."""

from __future__ import annotations

import pytest

import qoper8
import qoper8.testing


async def test_inline_pool_matches_the_real_pool_on_results_and_errors() -> None:
    async with qoper8.testing.InlinePool("tests.handlers:worker") as inline:
        assert await inline.submit({"type": "add", "a": "2", "b": 3}) == 5
        assert await inline.submit({"type": "point", "x": 1, "y": 2}) == {"x": 1, "y": 2}
        with pytest.raises(qoper8.JobFailed) as info:
            await inline.submit({"type": "raise_error", "message": "m"})
        assert info.value.remote_type == "ValueError"
        with pytest.raises(qoper8.JobFailed):
            await inline.submit({"type": "bad_result"})
        for bad in (
            {"type": "nope"},
            {"type": "add", "a": 1},
            {"no": "type"},
            {"type": "echo", "value": {1}},
        ):
            with pytest.raises(qoper8.InvalidAction):
                await inline.submit(bad)
    with pytest.raises(qoper8.PoolClosed):
        await inline.submit({"type": "echo"})
