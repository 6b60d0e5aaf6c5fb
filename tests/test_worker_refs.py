"""A wrong worker reference says what is wrong and where it looked, in StartFailed; and
signatures show DEFAULT, not an object's address."""

from __future__ import annotations

import asyncio
import inspect
import pydoc
import re
from pathlib import Path

import pytest

import qoper8
import qoper8.sync
from tests import handlers


async def test_a_missing_attribute_is_named_with_the_modules_file() -> None:
    async with asyncio.timeout(30):
        with pytest.raises(qoper8.StartFailed) as info:
            async with qoper8.Pool("tests.handlers:nope", children=1):
                pytest.fail("the pool must not open")
    text = str(info.value)
    assert "has no attribute 'nope'" in text
    assert str(Path(handlers.__file__)) in text
    assert "NoneType" not in text
    assert info.value.remote_type == "AttributeError"


async def test_a_missing_module_lists_the_path_searched() -> None:
    async with asyncio.timeout(30):
        with pytest.raises(qoper8.StartFailed) as info:
            async with qoper8.Pool("no_such_package.users:worker", children=1):
                pytest.fail("the pool must not open")
    assert "no module named 'no_such_package'" in str(info.value)
    assert "searched sys.path: " in str(info.value)


@pytest.mark.parametrize(
    "method",
    [qoper8.Pool.submit, qoper8.sync.Pool.submit, qoper8.Client.submit, qoper8.RedisPool.submit],
    ids=["Pool", "sync.Pool", "Client", "RedisPool"],
)
def test_signatures_show_default_not_an_object_address(method: object) -> None:
    signature = str(inspect.signature(method))  # type: ignore[arg-type]
    assert "timeout: 'float | None' = DEFAULT" in signature
    assert "object at 0x" not in signature


def test_help_on_the_pool_shows_no_object_address() -> None:
    text = re.sub(".\b", "", pydoc.render_doc(qoper8.Pool, renderer=pydoc.TextDoc()))
    assert "object at 0x" not in text
    assert "= DEFAULT" in text


def test_help_on_the_pool_lists_no_internal_callbacks() -> None:
    """The children's callbacks belong to the supervisor and the dispatcher, not to the
    public face (issue 9 item 14)."""
    text = re.sub(".\b", "", pydoc.render_doc(qoper8.Pool, renderer=pydoc.TextDoc()))
    for internal in ("child_ready", "child_frame", "child_exited", "child_output", "reconcile"):
        assert internal not in text
    public = [name for name in dir(qoper8.Pool) if not name.startswith("_")]
    assert "submit" in public
    assert not [name for name in public if name.startswith("child_")]
