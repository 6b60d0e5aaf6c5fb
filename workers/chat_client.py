"""A terminal chat client for ``workers/chat.py`` through a running daemon (copy it):
``python -m workers.chat_client ada`` joins the room ``lobby`` (creating it if nobody did),
prints what happens in it, and says each line you type; end with Ctrl-D.

    $ qoper8 serve --worker workers.chat:worker --children 1 &
    $ python -m workers.chat_client ada          # one terminal
    $ python -m workers.chat_client bob          # another: each sees the other's lines

It runs in its own process and talks to the daemon over HTTP only (``qoper8.Client``), so
any number of them, on any machine that reaches the daemon, share the one room.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import qoper8


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def chat(url: str, token: str | None, user: str, room_name: str) -> None:
    """Join ``room_name`` as ``user``, print its events, say each line read from stdin."""
    async with qoper8.Client(url, token=token, timeout=10) as client:
        room = await client.actors.create(
            "room", room_name, args={"title": room_name}, if_exists="get"
        )
        async with room.events() as events:  # subscribed from here on: nothing is missed

            async def show() -> None:
                async for event in events:
                    p = event.payload if isinstance(event.payload, dict) else {}
                    if event.event == "said":
                        _print(f"{p.get('user')}: {p.get('text')}")
                    else:
                        _print(f"* {p.get('user')} {event.event}")

            shown = asyncio.create_task(show())
            users = await room.call("join", user=user)
            names = ", ".join(str(u) for u in users) if isinstance(users, list) else users
            _print(f"joined {room_name} as {user} (in the room: {names})")
            try:
                while line := await asyncio.to_thread(sys.stdin.readline):
                    if line.strip():
                        await room.call("say", user=user, text=line.rstrip("\n"))
            finally:
                await room.call("leave", user=user)
                shown.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.chat_client")
    parser.add_argument("user")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--url", default=os.environ.get("QOPER8_URL", "http://127.0.0.1:8765"))
    parser.add_argument("--token", default=os.environ.get("QOPER8_TOKEN"))
    args = parser.parse_args()
    asyncio.run(chat(args.url, args.token, args.user, args.room))


if __name__ == "__main__":
    main()
