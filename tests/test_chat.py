"""The chat room example (``workers/chat.py``) as the README runs it: a real ``qoper8 serve``
and two ``workers/chat_client.py`` processes that join one room through it and see each
other's lines; the room's history and members are the actor's state."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

import pytest

from tests.daemon_support import REPO, running

if TYPE_CHECKING:
    from pathlib import Path

    from tests.daemon_support import Daemon

pytestmark = pytest.mark.timeout(60)


class ChatClient:
    """One ``python -m workers.chat_client USER`` process."""

    def __init__(self, proc: asyncio.subprocess.Process, user: str) -> None:
        self.proc = proc
        self.user = user

    @classmethod
    async def start(cls, d: Daemon, user: str) -> ChatClient:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.chat_client", user, "--url", d.url,
            "--token", d.token or "",
            cwd=REPO, env=dict(os.environ), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc, user)

    async def wait_for(self, line: str) -> list[str]:
        """Read its output until ``line``; return what it printed before."""
        assert self.proc.stdout is not None
        before: list[str] = []
        while True:
            raw = await self.proc.stdout.readline()
            assert raw, f"{self.user} ended before printing {line!r}; it printed {before}"
            text = raw.decode().rstrip("\n")
            if text == line:
                return before
            before.append(text)

    async def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def leave(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return await self.proc.wait()


async def test_two_client_processes_chat_through_one_room(tmp_path: Path) -> None:
    with running(tmp_path, "--worker", "workers.chat:worker", children=1, token="chat") as d:
        async with asyncio.timeout(40):
            ada = await ChatClient.start(d, "ada")
            await ada.wait_for("joined lobby as ada (in the room: ada)")
            bob = await ChatClient.start(d, "bob")
            await bob.wait_for("joined lobby as bob (in the room: ada, bob)")
            await ada.wait_for("* bob joined")

            await ada.say("hello bob")
            await bob.wait_for("ada: hello bob")
            await bob.say("hi ada")
            await ada.wait_for("bob: hi ada")

            assert await bob.leave() == 0
            await ada.wait_for("* bob left")
            async with d.client() as client:
                room = await client.actors.get("lobby")
                history = await room.call("history")
                assert history == [
                    {"n": 1, "user": "ada", "text": "hello bob"},
                    {"n": 2, "user": "bob", "text": "hi ada"},
                ]
                assert await room.call("leave", user="nobody") == ["ada"]
            assert await ada.leave() == 0
