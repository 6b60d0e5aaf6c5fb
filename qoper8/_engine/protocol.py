"""The master ⇄ child wire format: frame header, message kinds, payload codecs. Bytes only, no I/O.

Each child has one private stream socket (a socketpair end passed by file descriptor, never
stdout). Both directions carry the same frames::

    offset  size  field
    0       4     payload length, little-endian u32 (bounded by max_message_bytes)
    4       1     kind (Kind below)
    5       3     zero padding
    8       8     job id, u64 (0 for frames about the child itself)
    16      8     extra, u64: on results, the child's resident memory in bytes when the master
                  asked for it (max_memory_per_child), else 0
    24      n     payload

Sequence::

    master                                   child
      CONFIG {worker, sys_path, ...}  ──▶
                                        ◀──  READY {pid, protocol, handlers}    or START_FAILED
      ACTION job=7 <json action>      ──▶                                     (one at a time)
                                        ◀──  RESULT job=7 <json>  | ERROR job=7 <json error>
      CALL job=8 <pickle (f, a, kw)>  ──▶
                                        ◀──  RESULT_PICKLE job=8  | ERROR_PICKLE job=8
      ACTION job=9                    ──▶
                                        ◀──  MESSAGE job=9 <json>   (job.send, a yield; in order)
                                        ◀──  PROGRESS job=9 <json>  (the newest only, paced)
                                        ◀──  NOTIFY / PUBLISH {topic, payload}  (any time)
                                        ◀──  RESULT job=9
      TRACE job=13 {traceparent, ...} ──▶    (only under a caller's span, with OpenTelemetry:
      ACTION job=13 (or CALL)         ──▶     the W3C context, in the same write as the job)
                                        ◀──  RESULT job=13 ...
      ACTION job=12                   ──▶
                                        ◀──  REPLACE_ME job=12 {reason}  (the handler asked for
                                        ◀──  RESULT job=12 | ...          a fresh child: retire
                                                                          this one after it)
      DELIVER id=4 {topic, payload, reply}  ──▶   (between two jobs, never during one)
                                        ◀──  REPLY id=4 <json> | REPLY_ERROR id=4 <json error>
      ACTOR_START job=10 {type, name, args | state}  ──▶   (an actor child only)
                                        ◀──  RESULT job=10 <first snapshot or null> | ERROR
      ACTOR_CALL job=11 {actor, method, args}        ──▶
                                        ◀──  ACTOR_EVENT {actor, event, payload}  (any number)
                                        ◀──  ACTOR_SNAPSHOT job=11 <state>  (if it keeps one)
                                        ◀──  RESULT job=11 | ERROR job=11
      ACTOR_STOP id=10                ──▶
      RETIRE                          ──▶    (runs on_stop, exits 0)

Frames about a job carry its id: the master drops a MESSAGE or PROGRESS whose job is no
longer the child's current one, so a late message never reaches the next caller.

Actions and their results are JSON (orjson), so that whatever works here works over HTTP and
Redis too. ``CALL`` frames (``Pool.run``) are pickled: master and child trust each other, and
that face exists precisely for arbitrary picklable functions. Nothing from a network is ever
put in a CALL frame.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

PROTOCOL_VERSION: Final = 1

HEADER: Final = struct.Struct("<IBxxxQQ")
HEADER_SIZE: Final = HEADER.size


class Kind(enum.IntEnum):
    """Message kinds. Master → child below 10, child → master from 10."""

    CONFIG = 1
    ACTION = 2
    CALL = 3
    RETIRE = 4
    DELIVER = 5  # a broadcast, an ask or a relayed publish, for an on_message handler
    ACTOR_START = 6  # make an actor (a job: its reply is the first snapshot, or null)
    ACTOR_CALL = 7  # one method call of an actor on this child (a job)
    ACTOR_STOP = 8  # drop an actor (no reply: the child reads its frames in order)
    # The caller's W3C trace context (JSON: traceparent, tracestate) for the job frame that
    # follows it in the same write; sent only when OpenTelemetry is on and a span is active.
    TRACE = 9
    READY = 10
    START_FAILED = 11
    # The end of a job: 12 to 15.
    RESULT = 12
    RESULT_PICKLE = 13
    ERROR = 14
    ERROR_PICKLE = 15
    # Anything else a child says, from 16 on.
    MESSAGE = 16
    PROGRESS = 17
    NOTIFY = 18
    PUBLISH = 19
    REPLY = 20
    REPLY_ERROR = 21
    ACTOR_SNAPSHOT = 22  # an actor's state after the call whose reply follows
    ACTOR_EVENT = 23  # qoper8.actor_event from inside a method
    # Sent just before a job's reply: retire this child after it (ReplaceChild). Clear of the
    # messages' range so that new kinds there never renumber it.
    REPLACE_ME = 30


# Child → master kinds from here on are not the end of a job (see ``Kind``).
FIRST_MESSAGE: Final = int(Kind.MESSAGE)


class ErrorCategory(enum.StrEnum):
    """Why a job produced no result, as the child reports it."""

    FAILED = "failed"  # the handler raised, or its result could not be encoded
    INVALID = "invalid"  # unknown type or params rejected by the handler's annotations


class ProtocolError(Exception):
    """A frame broke the format: the peer is not a qoper8 process of this version, or is
    corrupt. The channel cannot be trusted after this and the peer is killed."""


def frame(kind: Kind, job_id: int, payload: bytes, extra: int = 0) -> bytes:
    """One frame, header and payload in a single buffer (one send per frame)."""
    return HEADER.pack(len(payload), kind, job_id, extra) + payload


# A topic is a dotted name ("cache.invalidate"); "qoper8." belongs to qoper8 itself.
_TOPIC: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*\Z")
RESERVED_PREFIX: Final = "qoper8."


def check_topic(topic: object) -> str:
    """``topic`` if it is a dotted name outside the reserved ``qoper8.`` namespace.

    Raises:
        ValueError: it is not.
    """
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise ValueError(f"a topic is a dotted name like 'cache.invalidate', not {topic!r}")
    if topic.startswith(RESERVED_PREFIX):
        raise ValueError(f"topics under {RESERVED_PREFIX!r} are reserved: {topic!r}")
    return topic


def encode_value(value: object, what: str, limit: int) -> bytes:
    """A message's JSON, refused as a result would be: not JSON, NaN or Infinity, or over
    ``limit`` bytes.

    Raises:
        TypeError: not JSON. ValueError: NaN or Infinity, or too big.
    """
    try:
        body = dumps(value)
    except TypeError as exc:
        raise TypeError(f"{what} is not JSON: {exc}") from None
    if body.find(b"null") >= 0 and (found := find_non_finite(value)) is not None:
        path, number = found
        where = "it is" if not path else f"field {format_path(path)} is"
        raise ValueError(f"{what} is not JSON: {where} {number_name(number)}")
    if len(body) > limit:
        raise ValueError(f"{what} is {len(body)} bytes, over max_message_bytes of {limit}")
    return body


def dumps(value: object) -> bytes:
    """Encode JSON the way every qoper8 boundary does. Pydantic models become their JSON
    form; anything else that is not JSON raises ``TypeError``."""
    return orjson.dumps(value, default=encode_model)


loads: Final = orjson.loads
JSONDecodeError: Final = orjson.JSONDecodeError


def encode_model(value: object) -> object:
    """orjson's ``default`` hook: pydantic models (nested anywhere) become their JSON form."""
    dump = getattr(value, "model_dump", None)
    if dump is not None and callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def action_fields(action: object) -> tuple[str, dict[str, Any]]:
    """Check an action's shape and return its type and its fields as a dict (a pydantic
    model becomes its JSON form). Every face (pool, daemon client, Redis, inline) refuses
    bad actions with the same words.

    Raises:
        InvalidAction: not a mapping or a model, or no string ``type``.
    """
    from ..errors import InvalidAction

    if isinstance(action, dict):
        data: dict[str, Any] = action
    elif isinstance(action, Mapping):
        data = dict(action)
    elif callable(getattr(action, "model_dump", None)):
        data = action.model_dump(mode="json")  # type: ignore[attr-defined]
    else:
        message = (
            f"an action is a mapping with a 'type' field or a pydantic model, "
            f"not {type(action).__name__}"
        )
        raise InvalidAction(message, errors=[{"loc": [], "msg": message, "type": "dict_type"}])
    action_type = data.get("type")
    if not isinstance(action_type, str):
        message = "an action needs a string 'type' field"
        kind = "missing" if action_type is None and "type" not in data else "string_type"
        raise InvalidAction(message, errors=[{"loc": ["type"], "msg": message, "type": kind}])
    return action_type, data


def encode_action(action: object) -> tuple[str, bytes]:
    """``action_fields``, then JSON-encode the action exactly as every face does (see
    ``refuse_non_finite`` for what JSON cannot say).

    Raises:
        InvalidAction: as ``action_fields``, or a field is not JSON (NaN and Infinity
            included).
    """
    from ..errors import ErrorEntry, InvalidAction

    action_type, data = action_fields(action)
    try:
        payload = dumps(data)
    except TypeError as exc:
        message = f"action {action_type!r} is not JSON-encodable: {exc}"
        entry: ErrorEntry = {"loc": [], "msg": message, "type": "json_type"}
        raise InvalidAction(message, errors=[entry]) from None
    if payload.find(b"null") >= 0:  # faster than `in`, which first tries the operand as an int
        refuse_non_finite(data, action_type)
    return action_type, payload


# What an InvalidAction entry says of a NaN or an Infinity; pydantic's words and type.
NON_FINITE_MSG: Final = "Input should be a finite number (JSON has no NaN or Infinity)"
NON_FINITE_TYPE: Final = "finite_number"


def refuse_non_finite(value: object, action_type: str) -> None:
    """Raise ``InvalidAction`` if ``value`` holds a NaN or an Infinity anywhere.

    orjson writes those as ``null``, so a caller's NaN would arrive as ``None``. Only a
    payload that contains ``null`` can hide one: callers run this walk only then, which
    keeps the common action free of a Python-level walk.

    Raises:
        InvalidAction: naming the field's path.
    """
    found = find_non_finite(value)
    if found is None:
        return
    from ..errors import InvalidAction

    path, number = found
    raise InvalidAction(
        f"action {action_type!r} is not JSON: field {format_path(path)} is "
        f"{number_name(number)}, which JSON cannot carry (orjson would send null); "
        f"send null or a string instead",
        errors=[{"loc": path, "msg": NON_FINITE_MSG, "type": NON_FINITE_TYPE}],
    )


def find_non_finite(value: object) -> tuple[list[str | int], float] | None:
    """The path to the first NaN or ±Infinity in ``value`` and that number, walking it as
    orjson encodes it (dicts, lists, tuples, dataclasses, enums, pydantic models), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], value)
    items: Iterable[tuple[str | int, object]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, enum.Enum):
        return find_non_finite(value.value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    elif callable(getattr(value, "model_dump", None)):
        return find_non_finite(encode_model(value))
    else:
        return None
    for key, item in items:
        found = find_non_finite(item)
        if found is not None:
            return [key, *found[0]], found[1]
    return None


def format_path(path: list[str | int]) -> str:
    """``["user", "scores", 2]`` as ``user.scores[2]``, the way a person points at it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the value itself)"


def number_name(number: float) -> str:
    """How JSON-minded people call a non-finite float."""
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


class FrameReader:
    """Splits a byte stream into frames. Feed it what arrives; it yields complete frames and
    keeps the rest. Large payloads are collected in a list of chunks and joined once, so a
    20 MiB result costs one copy, not one per read."""

    __slots__ = ("_buffer", "_pending", "limit")

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self.limit = limit
        self._pending: tuple[int, int, int, int] | None = None

    @property
    def pending(self) -> bool:
        """Whether part of a frame has arrived and waits for the rest."""
        return bool(self._buffer) or self._pending is not None

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        """Add bytes; return the (kind, job_id, extra, payload) frames they complete."""
        buf = self._buffer
        if not buf and self._pending is None and len(data) >= HEADER_SIZE:
            # Fast path: one whole frame in one read, the common case for small results.
            length, kind, job_id, extra = HEADER.unpack_from(data)
            if len(data) == HEADER_SIZE + length and length <= self.limit:
                return [(kind, job_id, extra, data[HEADER_SIZE:])]
        buf += data
        out: list[tuple[int, int, int, bytes]] = []
        while True:
            if self._pending is None:
                if len(buf) < HEADER_SIZE:
                    return out
                length, kind, job_id, extra = HEADER.unpack_from(buf)
                if length > self.limit:
                    raise ProtocolError(
                        f"frame of {length} bytes exceeds the limit of {self.limit}"
                    )
                del buf[:HEADER_SIZE]
                self._pending = (length, kind, job_id, extra)
            length, kind, job_id, extra = self._pending
            if len(buf) < length:
                return out
            with memoryview(buf) as view:
                payload = bytes(view[:length])
            del buf[:length]
            self._pending = None
            out.append((kind, job_id, extra, payload))
