"""The HTTP API against its own OpenAPI document, by schemathesis: requests generated from
``/v1/openapi.json`` (valid ones and invalid ones) against the API served over a real pool
get only documented statuses, bodies that fit their schemas, and no 500 but ``JobFailed``
(or reload's ``StartFailed``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

import qoper8
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.openapi import openapi_document
from tests.daemon_support import HANDLERS, free_port
from tests.test_openapi import AUTH, TOKEN, FakeControl, documented

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

# Generated requests per operation and mode: enough to cross every branch of the input
# checks a few times, few enough for the whole run to take seconds.
EXAMPLES = 25
# The longest ?wait= a generated request keeps (seconds).
WAIT_MAX = 0.05


@contextlib.contextmanager
def api_in_a_thread() -> Iterator[tuple[str, dict[str, Any]]]:
    """The API over a real pool and a fake daemon, served on a port from a thread of its
    own (schemathesis's requests are blocking); yields its URL and its document."""
    port = free_port()
    ready = threading.Event()
    result: dict[str, Any] = {}
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def serve() -> None:
        nonlocal stop, loop
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        async with qoper8.Pool(HANDLERS, children=1, timeout=5.0) as pool:
            api = HttpApi(pool, FakeControl(), token=TOKEN, max_body_bytes=4096)
            runner = web.AppRunner(api.make_app(), **api.runner_options())
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            result["doc"] = openapi_document(
                version=qoper8.__version__, token=True, public_health=False, dashboard=True
            )
            ready.set()
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30), "the API did not start"
    try:
        yield f"http://127.0.0.1:{port}", result["doc"]
    finally:
        assert loop is not None
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def test_generated_requests_get_documented_answers_and_no_500_but_job_failed() -> None:
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    statuses: dict[str, set[int]] = {}
    with api_in_a_thread() as (url, doc), requests.Session() as session:
        schema = schemathesis.openapi.from_dict(doc)
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {f"{op.method.upper()} {op.path}" for op in operations} == {
            f"{m} {p}" for m, p in documented(doc)
        }
        for op in operations:
            if op.path.endswith("/events"):
                continue  # streams that need not end; their statuses are provoked elsewhere
            fuzz(op, GenerationMode.POSITIVE, url, session, statuses)
            if op.body or op.headers:  # a bare GET has no invalid request to make
                fuzz(op, GenerationMode.NEGATIVE, url, session, statuses)
    # The run reached the API's refusals, not only its happy paths.
    assert {400, 422} <= statuses["POST /v1/submit"], statuses
    assert 200 in statuses["GET /v1/status"]


def fuzz(op: Any, mode: Any, url: str, session: Any, statuses: dict[str, set[int]]) -> None:
    """EXAMPLES generated requests to one operation, each answer checked."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # no example database in the tree
        derandomize=True,  # the same requests every run: a failure reproduces
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if isinstance(case.query, dict) and "wait" in case.query:
            # GET /v1/actors/{name}?wait=N waits N seconds for a name that never comes: a
            # valid request, kept short here (its refusals are still generated).
            with contextlib.suppress(TypeError, ValueError):
                if float(case.query["wait"]) > WAIT_MAX:
                    case.query["wait"] = WAIT_MAX
        response = case.call(base_url=url, session=session, headers=AUTH, timeout=30)
        case.validate_response(response, checks=checks)
        statuses.setdefault(op.label, set()).add(response.status_code)
        if response.status_code == 500:
            error = response.json()["error"]["type"]
            allowed = {"JobFailed", "StartFailed"} if op.path == "/v1/reload" else {"JobFailed"}
            assert error in allowed, response.text

    run()
