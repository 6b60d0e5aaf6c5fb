"""``ClientOperations``: the daemon's operator side, on ``qoper8.Client``: status, health,
metrics, resize and reload (what the ``qoper8`` commands call).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from ._client_base import ClientBase
from ._client_wire import error_of, object_of
from .errors import TransportError

__all__ = ["ClientOperations"]


class ClientOperations(ClientBase):
    """Status, health, metrics, resize and reload (``qoper8.Client`` inherits them)."""

    async def status(self) -> dict[str, Any]:
        """The daemon's ``/v1/status``: children (pid, state, generation), queue, totals."""
        return object_of(await self._request("GET", "/v1/status"))

    async def health(self) -> dict[str, Any]:
        """The daemon's ``/v1/health`` (also answered when not ready: see ``status``)."""
        return object_of(await self._request("GET", "/v1/health", ok=(200, 503)))

    async def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        session = self._open()
        try:
            async with session.get(self._base + "/metrics") as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise error_of(resp.status, text.encode())
                return text
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"cannot reach the daemon at {self.url}: {exc}") from exc

    async def resize(
        self,
        children: int | tuple[int, int] | None = None,
        *,
        delta: int | None = None,
        force: bool = False,
        role: str | None = None,
    ) -> int:
        """Set the number of children (or change it by ``delta``); returns the new size.

        Args:
            children: the new number of children, or a range ``(min, max)`` to autoscale
                between (a number on an autoscaled role fixes its size).
            delta: change the number by this much instead (an autoscaled role: its least,
                as TTIN and TTOU do).
            force: allow more than 4 children per CPU of the daemon's machine (a likely
                typo otherwise, refused with ``ConfigError``).
            role: the role to resize (a daemon of several roles needs it).
        """
        value = list(children) if isinstance(children, tuple) else children
        body: dict[str, object] = {"children": value} if children is not None else {"delta": delta}
        if force:
            body["force"] = True
        if role is not None:
            body["role"] = role
        data = object_of(await self._request("POST", "/v1/resize", orjson.dumps(body)))
        return int(data["children"])

    async def reload(self) -> int:
        """Reload the daemon's settings and worker code (as HUP); returns the generation."""
        data = object_of(await self._request("POST", "/v1/reload", b"{}"))
        return int(data["generation"])
