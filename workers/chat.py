"""stractory's chat room as a qoper8 actor (copy it): one ``room`` per name, living on an
actor child of its own, that people join, say lines in and leave, and that tells every
subscriber what happens in it. Its state (who is in, the last lines) survives a restart of
its child: ``snapshot`` after each call, ``restore`` instead of ``__init__``.

    room = await pool.actors.create("room", "lobby", args={"title": "Lobby"}, if_exists="get")
    async with room.events() as events:                 # what happens in the room, in order
        await room.call("join", user="ada")
        await room.call("say", user="ada", text="hello")
        async for event in events: ...                  # joined, said, left

Over the daemon (``qoper8 serve --worker workers.chat:worker``), ``workers/chat_client.py``
is a terminal client: two of them, in two terminals, chat through one room.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

import qoper8

worker = qoper8.Worker()

# Lines a room keeps for history() and across restarts. More costs the snapshot the master
# keeps after every call (and the size of that frame); fewer forgets sooner.
HISTORY: Final = 100


@worker.actor("room")
class Room:
    """A chat room: its members and its last ``HISTORY`` lines."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.users: list[str] = []
        self.lines: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.said = 0

    def join(self, user: str) -> list[str]:
        """Enter the room; returns who is in it."""
        if user not in self.users:
            self.users.append(user)
            qoper8.actor_event("joined", {"user": user})
        return list(self.users)

    def say(self, user: str, text: str) -> int:
        """Say a line (members only); returns its number."""
        if user not in self.users:
            raise qoper8.HandlerError(f"{user} is not in the room", status=403, code="not_in")
        self.said += 1
        line = {"n": self.said, "user": user, "text": text}
        self.lines.append(line)
        qoper8.actor_event("said", line)
        return self.said

    def leave(self, user: str) -> list[str]:
        """Leave the room; returns who is still in it."""
        if user in self.users:
            self.users.remove(user)
            qoper8.actor_event("left", {"user": user})
        return list(self.users)

    def history(self, last: int = HISTORY) -> list[dict[str, Any]]:
        """The last lines said, oldest first."""
        return list(self.lines)[-last:] if last > 0 else []

    def snapshot(self) -> dict[str, Any]:
        return {"title": self.title, "users": self.users, "lines": list(self.lines),
                "said": self.said}  # fmt: skip

    @classmethod
    def restore(cls, state: dict[str, Any]) -> Room:
        room = cls(state["title"])
        room.users = list(state["users"])
        room.lines.extend(state["lines"])
        room.said = int(state["said"])
        return room
