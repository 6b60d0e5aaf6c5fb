"""The messages and actors routes against the OpenAPI document (as ``test_openapi`` does for
the others): every status each one answers in these tests is documented for it, with a body
that fits its schema, and every status documented for them is provoked here."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

import qoper8
from qoper8._daemon.http_api import HttpApi
from qoper8._daemon.openapi_messages import MESSAGE_OPERATIONS
from tests.conftest import wait_until
from tests.daemon_support import HANDLERS, serve_like_the_daemon
from tests.test_openapi import AUTH, TOKEN, Documented, FakeControl

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.timeout(60)]


async def test_every_status_of_the_messages_and_actors_routes_is_documented(
    tmp_path: Path,
) -> None:
    async with qoper8.Pool(HANDLERS, children=1, max_queue=1) as pool, asyncio.timeout(50):
        control = FakeControl()
        api = HttpApi(pool, control, token=TOKEN, max_body_bytes=4096)
        api.actor_routes.max_streams = 1
        async with TestClient(serve_like_the_daemon(api)) as http:
            resp = await http.get("/v1/openapi.json", headers=AUTH)
            answers = Documented(await resp.json())

            async def call(
                method: str,
                path: str,
                body: Any = None,
                *,
                raw: bytes | None = None,
                headers: dict[str, str] | None = None,
                documented: str | None = None,
            ) -> tuple[int, bytes]:
                data = raw if raw is not None else (None if body is None else orjson.dumps(body))
                hdrs = {**AUTH, **(headers or {})}
                async with http.request(method, path, data=data, headers=hdrs) as resp:
                    payload = await resp.read()
                    answers.check(
                        method, documented or path, resp.status, resp.content_type, payload
                    )
                    return resp.status, payload

            async def status(*args: Any, **kwargs: Any) -> int:
                return (await call(*args, **kwargs))[0]

            async def idle() -> None:
                await wait_until(
                    lambda: [c.state for c in pool.statistics().children] == ["idle"],
                    what="one idle child",
                )

            # ---------------------------------------------------------- /v1/stream
            s = "/v1/stream"
            code, body = await call("POST", s, {"type": "count", "n": 3})
            assert code == 200
            assert body.count(b"event: message") == 3
            code, body = await call(
                "POST", s, {"type": "count", "n": 2}, headers={"Accept": "application/x-ndjson"}
            )
            assert (code, body.splitlines()[-1]) == (200, b'{"result":{"sent":2}}')
            assert await status("POST", s, raw=b"[1]") == 400
            assert await status("POST", s, raw=b"x" * 5000) == 413
            assert await status("POST", s, {"type": "no.such.type"}) == 422
            assert (
                await status("POST", s, {"type": "echo"}, headers={"Authorization": "Bearer no"})
                == 401
            )
            # One job runs, one waits (max_queue=1): a stream is QueueFull like a submit.
            gate = tmp_path / "gate"
            slow = {"type": "wait_file", "path": str(gate)}
            blockers = [asyncio.create_task(status("POST", "/v1/submit", slow))]
            await wait_until(lambda: pool.statistics().running == 1, what="a running job")
            blockers.append(asyncio.create_task(status("POST", "/v1/submit", slow)))
            await wait_until(lambda: pool.statistics().queue_length == 1, what="a queued job")
            assert await status("POST", s, {"type": "echo"}) == 503
            gate.touch()
            assert await asyncio.gather(*blockers) == [200, 200]
            gate.unlink()

            # ---------------------------------------------------------- /v1/broadcast
            b = "/v1/broadcast"
            code, body = await call("POST", b, {"topic": "ping", "payload": {"value": 1}})
            assert code == 200
            assert orjson.loads(body)["complete"] is True
            code, body = await call("POST", b, {"topic": "boom"})
            assert code == 200
            assert orjson.loads(body)["replies"][0]["error"]["type"] == "JobFailed"
            assert await status("POST", b, {"payload": {}}) == 400
            assert await status("POST", b, {"topic": "ping", "sticky": "yes"}) == 400
            assert await status("POST", b, raw=b"{" * 5000) == 413
            assert await status("POST", b, {"topic": "qoper8.reserved"}) == 422

            # ---------------------------------------------------------- /v1/ask
            a = "/v1/ask"
            child = pool.statistics().children[0]
            code, body = await call("POST", a, {"child": child.id, "topic": "ping"})
            assert (code, orjson.loads(body)["result"]["pid"]) == (200, child.pid)
            assert await status("POST", a, {"pid": child.pid, "topic": "ping"}) == 200
            assert await status("POST", a, {"child": 1, "pid": 1, "topic": "ping"}) == 400
            assert await status("POST", a, raw=b"{" * 5000) == 413
            assert await status("POST", a, {"child": 999, "topic": "ping"}) == 422
            assert await status("POST", a, {"child": child.id, "topic": "boom"}) == 500
            refuse = {"child": child.id, "topic": "refuse"}
            assert await status("POST", a, {**refuse, "payload": {"status": 409}}) == 409
            assert await status("POST", a, {**refuse, "payload": {"status": 507}}) == 507
            waiting = {"child": child.id, "topic": "wait_file", "payload": {"path": str(gate)}}
            assert await status("POST", a, {**waiting, "timeout": 0.2}) == 504
            gate.touch()  # the child answers the withdrawn ask's function, then is idle
            await idle()
            gate.unlink()
            assert await status("POST", a, {"child": child.id, "topic": "die"}) == 502
            await idle()

            # ---------------------------------------------------------- /v1/actors
            act = "/v1/actors"
            new = {"type": "counter", "name": "c1", "args": {"start": 5}}
            assert await status("POST", act, new) == 201
            assert await status("POST", act, {**new, "if_exists": "get"}) == 200
            assert await status("POST", act, new) == 409
            assert await status("POST", act, {"type": "counter"}) == 400
            assert await status("POST", act, raw=b"{" * 5000) == 413
            assert await status("POST", act, {"type": "no.such.actor", "name": "x"}) == 422
            assert await status("POST", act, {"type": "broken", "name": "b"}) == 500
            assert await status("POST", act, {"type": "dies_at_start", "name": "d"}) == 502
            assert await status("GET", act) == 200

            one = "/v1/actors/{name}"
            assert await status("GET", f"{act}/c1", documented=one) == 200
            assert await status("GET", f"{act}/c1?wait=soon", documented=one) == 400
            assert await status("GET", f"{act}/nobody", documented=one) == 404

            c = "/v1/actors/{name}/call"
            assert await status("POST", f"{act}/c1/call", {"method": "add"}, documented=c) == 200
            assert await status("POST", f"{act}/c1/call", {"args": {}}, documented=c) == 400
            assert await status("POST", f"{act}/c1/call", raw=b"{" * 5000, documented=c) == 413
            assert await status("POST", f"{act}/x/call", {"method": "add"}, documented=c) == 404
            assert await status("POST", f"{act}/c1/call", {"method": "nope"}, documented=c) == 422
            assert await status("POST", f"{act}/c1/call", {"method": "fail"}, documented=c) == 500
            for chosen in (409, 507):
                refusal = {"method": "refuse", "args": {"status": chosen}}
                assert await status("POST", f"{act}/c1/call", refusal, documented=c) == chosen
            late = {"method": "wait_file", "args": {"path": str(gate)}, "timeout": 0.2}
            assert await status("POST", f"{act}/c1/call", late, documented=c) == 504
            # The deadline killed its child (max_restarts 0): it cannot take calls now.
            assert await status("POST", f"{act}/c1/call", {"method": "add"}, documented=c) == 503
            crash = {"type": "counter", "name": "c2", "max_restarts": 1}
            assert await status("POST", act, crash) == 201
            assert await status("POST", f"{act}/c2/call", {"method": "crash"}, documented=c) == 502

            ev = "/v1/actors/{name}/events"
            assert await status("GET", f"{act}/c2/events?buffer=0", documented=ev) == 400
            assert await status("GET", f"{act}/nobody/events", documented=ev) == 404
            async with http.get(f"{act}/c2/events", headers=AUTH) as stream:
                answers.check("GET", ev, stream.status, stream.content_type, b"")
                assert stream.status == 200
                assert await status("GET", f"{act}/c2/events", documented=ev) == 503  # one max
            d = "/v1/actors/{name}"
            assert await status("DELETE", f"{act}/c2", documented=d) == 200
            assert await status("DELETE", f"{act}/c2", documented=d) == 404

            # Draining: everything that would start work is refused.
            control.draining = True
            assert await status("POST", s, {"type": "echo"}) == 503
            assert await status("POST", b, {"topic": "ping"}) == 503
            assert await status("POST", a, {"child": 1, "topic": "ping"}) == 503
            assert await status("POST", act, {"type": "counter", "name": "late"}) == 503

    ours = {op.path for op in MESSAGE_OPERATIONS}
    listed = {
        (method.upper(), path, code)
        for path, ops in answers.doc["paths"].items()
        if path in ours
        for method, op in ops.items()
        for code in op["responses"]
    }
    # 401 comes from the one token check of every route (shown above on /v1/stream).
    assert {(m, p, code) for m, p, code in listed - answers.seen if code != "401"} == set()
