"""Property-based fuzz of the frame decoder: any chunking of valid frames decodes to exactly
those frames; garbage yields frames or ProtocolError, nothing else; and the reader never
holds more than one frame's worth of bytes, however the bytes arrive."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qoper8._engine import protocol as proto
from qoper8._engine.protocol import HEADER_SIZE, FrameReader, ProtocolError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
U64 = st.integers(min_value=0, max_value=2**64 - 1)
Frame = tuple[int, int, int, bytes]
frames_strategy = st.lists(
    st.tuples(st.integers(0, 255), U64, U64, st.binary(max_size=700)), max_size=12
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _buffered(reader: FrameReader) -> int:
    return len(reader._buffer)


@FUZZ
@given(frames=frames_strategy, cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_any_chunking_of_valid_frames_yields_exactly_those_frames(
    frames: list[Frame], cuts: list[int]
) -> None:
    limit = max((len(p) for *_, p in frames), default=0)
    stream = b"".join(proto.frame(k, j, p, e) for k, j, e, p in frames)  # type: ignore[arg-type]
    reader = FrameReader(limit)
    got: list[Frame] = []
    for chunk in _chunks(stream, cuts):
        got.extend(reader.feed(chunk))
        assert _buffered(reader) <= max(limit, HEADER_SIZE - 1)
    assert got == frames
    assert not reader.pending


@FUZZ
@given(
    data=st.binary(max_size=4000),
    prefix=frames_strategy,
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
    limit=st.integers(min_value=0, max_value=2048),
)
def test_garbage_yields_frames_or_protocol_error_and_stays_bounded(
    data: bytes, prefix: list[Frame], cuts: list[int], limit: int
) -> None:
    valid = b"".join(
        proto.frame(k, j, p[:limit], e)  # type: ignore[arg-type]
        for k, j, e, p in prefix
    )
    reader = FrameReader(limit)
    got: list[Frame] = []
    try:
        for chunk in _chunks(valid + data, cuts):
            got.extend(reader.feed(chunk))
            assert _buffered(reader) <= max(limit, HEADER_SIZE - 1)
    except ProtocolError:
        pass
    assert all(len(payload) <= limit for *_, payload in got)
    # the valid frames in front come out first and whole (those sharing a chunk with the
    # garbage that raised are lost with it: the channel is dead then anyway)
    expected = [(k, j, e, p[:limit]) for k, j, e, p in prefix]
    shown = min(len(got), len(expected))
    assert got[:shown] == expected[:shown]


@FUZZ
@given(length=st.integers(min_value=1, max_value=2**32 - 1), limit=st.integers(0, 4096))
def test_a_header_announcing_more_than_the_limit_is_refused_at_once(
    length: int, limit: int
) -> None:
    header = proto.HEADER.pack(length, 12, 1, 0)
    reader = FrameReader(limit)
    if length <= limit:
        assert reader.feed(header) == []
        return
    with pytest.raises(ProtocolError, match=f"{length} bytes exceeds the limit of {limit}"):
        reader.feed(header)
