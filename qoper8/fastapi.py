"""qoper8 in a FastAPI app (or any Starlette app): a lifespan that opens a pool, puts it on
``app.state`` and closes it, and an exception handler that answers qoper8's errors exactly as
the daemon does: the status of ``qoper8.errors.http_status`` (a ``HandlerError``'s chosen
status included), the ``{"error": {...}}`` body of ``error_to_dict``, ``Retry-After`` on 503.

```python
app = FastAPI(lifespan=qoper8.fastapi.lifespan("workers.postgres:worker", children=4))
qoper8.fastapi.add_error_handler(app)

@app.get("/items/{key}")
async def get_item(key: str, pool: qoper8.fastapi.PoolDep) -> object:
    return await pool.submit({"type": "item.get", "key": key}, timeout=5.0)
```

Optional: needs ``fastapi`` (``pip install 'qoper8[fastapi]'``); nothing of it is imported
until this module is. A plain Starlette app uses it alike (but for ``PoolDep``). Each uvicorn or
gunicorn worker process runs its own lifespan, so each opens a pool of its own (the README's
"In a web app" says how to size ``children`` then).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
from fastapi import Depends
from starlette.requests import Request  # noqa: TC002 (FastAPI reads get_pool's annotations)
from starlette.responses import Response

from ._engine.pool import Pool
from .errors import Qoper8Error, error_to_dict, http_status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from starlette.applications import Starlette

__all__ = [
    "RETRY_AFTER_SECONDS",
    "PoolDep",
    "add_error_handler",
    "error_response",
    "get_pool",
    "lifespan",
    "open_pool",
]

# The Retry-After of a 503, the daemon's own (qoper8 serve's RETRY_AFTER_SECONDS; a test
# holds them equal): clients that honour it back off alike from both.
RETRY_AFTER_SECONDS: Final = 1
# Where the pool lives on app.state unless told otherwise; get_pool and PoolDep read it.
STATE_NAME: Final = "pool"


@contextlib.asynccontextmanager
async def open_pool(
    app: Starlette, worker: str | None = None, *, state_name: str = STATE_NAME, **settings: Any
) -> AsyncIterator[Pool]:
    """Open a ``qoper8.Pool`` for ``app`` and put it on ``app.state``, for an app whose
    lifespan does more than this (``lifespan`` is this alone).

    Example:
        ```python
        @contextlib.asynccontextmanager
        async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with qoper8.fastapi.open_pool(app, "workers.postgres:worker", children=4):
                yield  # ... and the app's other resources
        ```

    Args:
        app: the application; the pool is ``app.state.<state_name>`` while it is open.
        worker: the worker module, ``"pkg.mod:attr"``.
        state_name: the attribute of ``app.state`` that holds the pool.
        **settings: ``qoper8.Pool``'s settings (``children``, ``timeout``, ...).

    Raises:
        StartFailed: the children could not start (the app does not start either).
        ConfigError: a setting is invalid.
    """
    async with Pool(worker, **settings) as pool:
        setattr(app.state, state_name, pool)
        try:
            yield pool
        finally:
            delattr(app.state, state_name)


def lifespan(
    worker: str | None = None, *, state_name: str = STATE_NAME, **settings: Any
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)`` that opens a
    pool when the app starts (the app serves once every child is ready) and closes it when
    the app stops (running jobs get ``shutdown_timeout`` to finish).

    Args:
        worker: the worker module, ``"pkg.mod:attr"``.
        state_name: the attribute of ``app.state`` that holds the pool.
        **settings: ``qoper8.Pool``'s settings (``children``, ``timeout``, ...).
    """

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        async with open_pool(app, worker, state_name=state_name, **settings):
            yield

    return run


def get_pool(request: Request) -> Pool:
    """The pool ``lifespan`` or ``open_pool`` put on the app (under the default name): a
    FastAPI dependency (``Depends(get_pool)``, or ``PoolDep``)."""
    pool: Pool = getattr(request.app.state, STATE_NAME)
    return pool


def error_response(exc: Qoper8Error, *, include_traceback: bool = False) -> Response:
    """The daemon's answer to ``exc``: its status (``http_status``), its JSON body
    (``{"error": error_to_dict(exc)}``) and ``Retry-After`` on 503.

    Args:
        exc: the error.
        include_traceback: keep a ``JobFailed``'s remote traceback in the body (the
            daemon does only with ``--debug``: a traceback tells a stranger about your code).
    """
    status = http_status(exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    body = orjson.dumps({"error": error_to_dict(exc, include_traceback=include_traceback)})
    return Response(body, status, headers, media_type="application/json")


def add_error_handler(app: Starlette, *, include_traceback: bool = False) -> None:
    """Answer every ``qoper8.Qoper8Error`` an endpoint lets through as the daemon would
    (``error_response``): 422 for an invalid action, 503 and ``Retry-After`` for a full
    queue or a replaced child, 504 for a deadline, a ``HandlerError``'s own status, ...

    Call it when building the app (Starlette reads exception handlers at its first request
    or lifespan, not later).

    Args:
        app: the application.
        include_traceback: as ``error_response``'s (for development only).
    """

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Qoper8Error)  # registered for Qoper8Error only
        return error_response(exc, include_traceback=include_traceback)

    app.add_exception_handler(Qoper8Error, handle)


# An endpoint parameter typed ``PoolDep`` gets the app's pool (FastAPI's dependency idiom).
PoolDep = Annotated[Pool, Depends(get_pool)]
