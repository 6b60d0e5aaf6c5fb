"""The wire format, without processes."""

from __future__ import annotations

import pytest

from qoper8._engine import protocol as proto
from qoper8._engine.protocol import FrameReader, Kind, ProtocolError


def test_frame_round_trips_through_the_reader() -> None:
    reader = FrameReader(limit=1 << 20)
    data = proto.frame(Kind.RESULT, 42, b'{"a":1}', extra=123)
    assert reader.feed(data) == [(Kind.RESULT, 42, 123, b'{"a":1}')]


def test_reader_reassembles_frames_split_anywhere() -> None:
    frames = [proto.frame(Kind.RESULT, i, b"x" * i) for i in range(1, 40)]
    stream = b"".join(frames)
    for step in (1, 7, 23, 100, len(stream)):
        reader = FrameReader(limit=1 << 20)
        got = []
        for at in range(0, len(stream), step):
            got.extend(reader.feed(stream[at : at + step]))
        assert [(job_id, payload) for _, job_id, _, payload in got] == [
            (i, b"x" * i) for i in range(1, 40)
        ]


def test_reader_refuses_a_frame_over_the_limit() -> None:
    reader = FrameReader(limit=10)
    with pytest.raises(ProtocolError):
        reader.feed(proto.frame(Kind.RESULT, 1, b"x" * 11))


def test_garbage_header_is_a_protocol_error() -> None:
    reader = FrameReader(limit=1 << 20)
    with pytest.raises(ProtocolError):
        reader.feed(b"\xff" * 64)


def test_dumps_encodes_pydantic_models_and_refuses_the_rest() -> None:
    from pydantic import BaseModel

    class M(BaseModel):
        a: int

    assert proto.loads(proto.dumps({"m": M(a=1), "l": [M(a=2)]})) == {
        "m": {"a": 1},
        "l": [{"a": 2}],
    }
    with pytest.raises(TypeError):
        proto.dumps({1, 2})
    with pytest.raises(TypeError):
        proto.dumps(b"bytes")
