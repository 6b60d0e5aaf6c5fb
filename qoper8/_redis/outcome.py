"""Outcome writing for ``RedisConsumer``: a job's result or error as rq records it (job hash
fields, the results stream entry) and as a waiting ``RedisPool`` reads it (the reply).
"""

from __future__ import annotations

import base64
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from ..errors import InvalidAction, JobError, Qoper8Error, error_to_dict
from .consumer_base import _ConsumerBase, _Running
from .jobs import RESULT_FAILED, RESULT_SUCCESSFUL

if TYPE_CHECKING:
    from .._types import JSONValue

__all__ = ["_Outcome"]


@dataclass(slots=True)
class _Outcome:
    status: str  # "finished", "failed" or "stopped" (rq's job statuses)
    reply: str
    job_fields: list[str] = field(default_factory=list)
    stream_fields: list[str] = field(default_factory=list)


class _Outcomes(_ConsumerBase):
    """Builds the outcome of a job as rq records it (job fields, results stream, reply)."""

    def _success(self, running: _Running, value: JSONValue) -> _Outcome:
        try:
            encoded = orjson.dumps(value)
        except TypeError as exc:  # a pool result is JSON already; belt and braces
            return self._failure(running, InvalidAction(f"result is not JSON: {exc}"))
        ended = time.time()
        stream: list[str] = [
            "type",
            str(RESULT_SUCCESSFUL),
            "worker_name",
            self.name,
            "execution_id",
            running.execution_id,
            "execution_started_at",
            repr(running.started),
            "execution_ended_at",
            repr(ended),
        ]
        if value is not None:  # rq stores no return_value for None
            stream += ["return_value", base64.b64encode(encoded).decode()]
        reply = b'{"id":' + orjson.dumps(running.job_id) + b',"result":' + encoded + b"}"
        return _Outcome("finished", reply.decode(), [], stream)

    def _failure(self, running: _Running, exc: Qoper8Error) -> _Outcome:
        if isinstance(exc, JobError) and exc.job_id is None:
            exc.job_id = running.job_id
        info = error_to_dict(exc)
        tb = info.get("remote_traceback") or ""
        exc_string = f"{tb.rstrip()}\n" if tb else ""
        exc_string += f"qoper8.{type(exc).__name__}: {exc}"
        err_json = orjson.dumps(info)
        stream: list[str] = [
            "type",
            str(RESULT_FAILED),
            "worker_name",
            self.name,
            "exc_string",
            base64.b64encode(zlib.compress(exc_string.encode())).decode(),
            "execution_id",
            running.execution_id,
            "execution_started_at",
            repr(running.started),
            "execution_ended_at",
            repr(time.time()),
        ]
        # rq reads exc_info zlib-compressed or, failing that, as plain text (Job.restore);
        # plain text travels in the script's JSON argument
        fields = ["exc_info", exc_string, "qoper8_error", err_json.decode()]
        reply = b'{"id":' + orjson.dumps(running.job_id) + b',"error":' + err_json + b"}"
        return _Outcome("failed", reply.decode(), fields, stream)
