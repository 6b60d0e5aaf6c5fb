"""The child's loop against garbage on its channel, in-process over a socketpair."""

from __future__ import annotations

import socket
import threading

from qoper8._engine import child_loop as _child_loop
from qoper8._engine import child_main as _child_main
from qoper8._engine import protocol as proto
from qoper8._engine.protocol import Kind
from qoper8._engine.worker import load_worker


def _run_loop(sock: socket.socket, result: list[object]) -> None:
    channel = _child_main.Channel(sock, limit=1 << 20)
    loop = _child_loop.ChildLoop(channel, load_worker("tests.handlers:worker"), report_memory=True)
    try:
        result.append(loop.run())
    except Exception as exc:
        result.append(exc)
    finally:
        channel.close()


def test_child_answers_an_action_then_refuses_a_garbage_frame() -> None:
    master, child = socket.socketpair()
    result: list[object] = []
    thread = threading.Thread(target=_run_loop, args=(child, result))
    thread.start()
    try:
        master.sendall(proto.frame(Kind.ACTION, 1, proto.dumps({"type": "add", "a": 1, "b": 2})))
        reader = proto.FrameReader(1 << 20)
        frames: list[tuple[int, int, int, bytes]] = []
        while not frames:
            frames = reader.feed(master.recv(65536))
        kind, job_id, rss, payload = frames[0]
        assert (kind, job_id, proto.loads(payload)) == (Kind.RESULT, 1, 3)
        assert rss > 1_000_000, "memory is reported when the master asks for it"
        master.sendall(b"\xff" * 64)
        thread.join(10)
        assert not thread.is_alive()
        assert isinstance(result[0], proto.ProtocolError)
    finally:
        master.close()


def test_child_reports_undecodable_action_as_invalid_and_carries_on() -> None:
    master, child = socket.socketpair()
    result: list[object] = []
    thread = threading.Thread(target=_run_loop, args=(child, result))
    thread.start()
    try:
        reader = proto.FrameReader(1 << 20)
        master.sendall(proto.frame(Kind.ACTION, 7, b"{not json"))
        frames: list[tuple[int, int, int, bytes]] = []
        while not frames:
            frames = reader.feed(master.recv(65536))
        kind, job_id, _, payload = frames[0]
        assert (kind, job_id) == (Kind.ERROR, 7)
        assert proto.loads(payload)["category"] == "invalid"
        master.sendall(proto.frame(Kind.RETIRE, 0, b""))
        thread.join(10)
        assert result == [_child_loop.EXIT_OK]
    finally:
        master.close()
