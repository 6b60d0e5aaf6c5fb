"""rq's job data model in Python: pure data conversion, no I/O and no redis import.

An action becomes the job hash rq's ``Job.to_dict`` writes with the JSON serializer
(``encode_job``); rq's job data becomes a qoper8 action, checked against the pool's handler
allowlist (``decode_job``); plus rq's timeout forms, its timestamps and defaults, and the typed
error a host stored with a failed job.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._engine.tracing import carrier
from ..errors import InvalidAction, JobError, Qoper8Error, error_from_dict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._engine.worker import HandlerInfo

__all__ = ["decode_job", "encode_job", "rq_now"]

# rq's defaults (rq/defaults.py), used when a job does not set its own.
DEFAULT_RESULT_TTL: Final = 500
DEFAULT_FAILURE_TTL: Final = 31536000
DEFAULT_JOB_TIMEOUT: Final = 180
# rq's Result.Type values and its results-stream length (rq/results.py).
RESULT_SUCCESSFUL: Final = 1
RESULT_FAILED: Final = 2
RESULTS_MAXLEN: Final = 10
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # rq.utils._TIMESTAMP_FORMAT
# The largest decompressed job payload accepted: bounds memory against zlib bombs.
MAX_JOB_BYTES: Final = 16 * 1024 * 1024
# Job data this long or longer is zlib-compressed, as rq always does; shorter is stored as
# plain JSON, which rq reads all the same (Job.restore falls back to it) and costs no
# compressor (zlib.compress sets up ~256 KiB of state per call: more than a small job's
# whole encoding). Lower compresses more jobs for nothing; higher stores big ones plain.
COMPRESS_FROM: Final = 1024


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def rq_now(now: float | None = None) -> str:
    """``now`` (default: the current time) as rq writes times in job hashes, in UTC: the
    format of ``TIMESTAMP_FORMAT``. A quarter of strftime's cost: it runs several times a job."""
    t = time.time() if now is None else now
    whole = int(t)
    if _second[0] != whole:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((t - whole) * 1_000_000):06d}Z"


_DEFLATE: Final = 8  # the compression method in a zlib stream's first byte (RFC 1950)


def _inflate(raw: bytes) -> bytes:
    """rq's job data: zlib-compressed, or plain (small jobs of RedisPool's, old rq jobs; rq
    falls back the same way)."""
    if raw[0] & 0x0F != _DEFLATE:
        return raw  # not a zlib stream: no decompressor set up (JSON starts with '[')
    d = zlib.decompressobj()
    try:
        out = d.decompress(raw, MAX_JOB_BYTES + 1)
    except zlib.error:
        return raw
    if len(out) > MAX_JOB_BYTES or d.unconsumed_tail:
        raise InvalidAction(f"job data inflates to more than {MAX_JOB_BYTES} bytes")
    return out


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_job(data: bytes | None, handlers: Mapping[str, HandlerInfo]) -> dict[str, Any]:
    """Turn rq's job data into a qoper8 action, checked against the allowlist.

    rq's JSON serializer stores ``[func_name, instance, args, kwargs]``. ``func_name`` must be
    a registered action type or a registered handler's import path; positional ``args`` bind
    in order to the handler's parameters; ``kwargs`` become the action's fields. Nothing is
    imported or run for a name that is not registered.

    Raises:
        InvalidAction: no data, not JSON (pickle is refused, never loaded), the wrong
            shape, a handler that is not registered, or arguments that do not bind.
    """
    if not data:
        raise InvalidAction(
            "the job hash has no data (rq keeps the function and its arguments there): "
            "not an rq job, or one written by hand"
        )
    body = _inflate(data)
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        hint = " (it looks like pickle; qoper8 reads only JSON)" if body[:1] == b"\x80" else ""
        raise InvalidAction(
            f"job data is not JSON{hint}; enqueue with serializer=JSONSerializer"
        ) from None
    if not (isinstance(decoded, list) and len(decoded) == 4):
        raise InvalidAction(
            f"job data is {_short(decoded)}, not rq's [func_name, instance, args, kwargs]"
        )
    func_name, instance, args, kwargs = decoded
    if not isinstance(func_name, str):
        raise InvalidAction(f"job names no function: func_name is {_short(func_name)}")
    if instance is not None:
        raise InvalidAction(f"job {func_name!r} names a method on an instance; only handlers run")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidAction(f"job {func_name!r}: args must be a list and kwargs an object")
    info = handlers.get(func_name)
    if info is None:
        info = next((h for h in handlers.values() if h.import_path == func_name), None)
    if info is None:
        known = ", ".join(sorted(handlers)) or "none"
        raise InvalidAction(
            f"{func_name!r} is not a handler registered by this pool's worker module, so it "
            f"was not imported or run (registered action types: {known})"
        )
    if len(args) > len(info.params):
        raise InvalidAction(
            f"{func_name!r} takes {len(info.params)} positional arguments "
            f"{info.params}, the job gave {len(args)}"
        )
    fields: dict[str, Any] = dict(zip(info.params, args, strict=False))
    for name, value in kwargs.items():
        if name in fields:
            raise InvalidAction(f"{func_name!r}: argument {name!r} given by position and by name")
        if name == "type" and value != info.type:
            raise InvalidAction(f"{func_name!r}: a 'type' field {_short(value)} conflicts")
        fields[name] = value
    fields["type"] = info.type
    return fields


def encode_job(
    job_id: str,
    queue: str,
    action: Mapping[str, Any],
    *,
    timeout: float | None,
    reply_key: str | None,
    result_ttl: int | None = None,
    stream: str = "",
) -> dict[str, bytes | str | int | float]:
    """The rq job hash for an action, as rq's Job.to_dict writes it with the JSON
    serializer: ``func_name`` is the action type, the other fields are kwargs. ``stream``:
    its host writes its messages ("1") or its progress ("p") to its stream (stream_scripts).
    Made in the caller's context: its OpenTelemetry span, if one is active, goes in
    ``qoper8_trace`` (W3C trace context) for the host to continue.

    Raises:
        InvalidAction: the action is not JSON-encodable.
    """
    action_type = action["type"]
    kwargs = {k: v for k, v in action.items() if k != "type"}
    try:
        data = orjson.dumps([action_type, None, [], kwargs])
    except TypeError as exc:
        raise InvalidAction(f"action {action_type!r} is not JSON-encodable: {exc}") from None
    if len(data) > MAX_JOB_BYTES:
        raise InvalidAction(f"action {action_type!r} is {len(data)} bytes, over {MAX_JOB_BYTES}")
    now = rq_now()
    args = ", ".join(f"{k}={_short(v, 40)}" for k, v in kwargs.items())
    mapping: dict[str, bytes | str | int | float] = {
        "created_at": now,
        "enqueued_at": now,
        "data": zlib.compress(data) if len(data) >= COMPRESS_FROM else data,
        "origin": queue,
        "description": f"{action_type}({args})",
        "status": "queued",
        "timeout": max(1, int(timeout + 0.999)) if timeout is not None else DEFAULT_JOB_TIMEOUT,
        "success_callback_name": "",
        "failure_callback_name": "",
        "stopped_callback_name": "",
        "started_at": "",
        "ended_at": "",
        "last_heartbeat": "",
        "worker_name": "",
        "group_id": "",
    }
    if timeout is not None:
        mapping["qoper8_deadline"] = time.time() + timeout
    if reply_key is not None:
        mapping["qoper8_reply"] = reply_key
    if result_ttl is not None:
        mapping["result_ttl"] = result_ttl
    if stream:
        mapping["qoper8_stream"] = stream
    trace = carrier()
    if trace is not None:
        mapping["qoper8_trace"] = orjson.dumps(trace)
    return mapping


def _int_or_none(value: object) -> int | None:
    if value is None or value == b"" or value == "":
        return None
    try:
        return int(float(_text(value)))
    except ValueError:
        return None


_TIMEOUT_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _parse_rq_timeout(text: str) -> float:
    """rq's timeout forms: seconds, or digits and a unit ("90", "5s", "3m", "1h", "2d")."""
    try:
        return float(text)
    except ValueError:
        pass
    unit = _TIMEOUT_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit():
        return float(int(text[:-1]) * unit)
    raise InvalidAction(f"job timeout {text!r} is not a number of seconds nor like '5m'")


def _job_timeout(timeout_raw: object, deadline_raw: object) -> float | None:
    """The job's deadline from now: rq's ``timeout`` (seconds; -1 for none), tightened by
    a RedisPool caller's absolute ``qoper8_deadline``."""
    timeout: float | None = float(DEFAULT_JOB_TIMEOUT)
    if timeout_raw is not None and timeout_raw != b"":
        value = _parse_rq_timeout(_text(timeout_raw))
        timeout = None if value < 0 else value
    if deadline_raw is not None and deadline_raw != b"":
        try:
            left = float(_text(deadline_raw)) - time.time()
        except ValueError:
            raise InvalidAction(f"job deadline {_short(deadline_raw)} is not a number") from None
        timeout = left if timeout is None else min(timeout, left)
    return timeout


def _stored_error(job_id: str, error: bytes | None) -> Qoper8Error:
    """The typed error a host stored with a failed job; rq's own cleanup (``rq info`` failing
    an abandoned job) stores none, which reads as a plain ``JobError``."""
    if error:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            return error_from_dict(orjson.loads(error))
    return JobError(f"job {job_id} failed in Redis (abandoned, as rq saw it)", job_id=job_id)
