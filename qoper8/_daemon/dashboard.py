"""The dashboard's page: three static files shipped in the package (``dashboard/``), served
at ``/`` and ``/dashboard/...`` unless ``--no-dashboard``.

The page holds no data and no secret, so it is served without the token; everything it
shows comes from ``/v1/events``, which needs the token (the page asks for it and keeps it in
the tab's sessionStorage). Nothing is loaded from elsewhere, and the Content-Security-Policy
says so to the browser: a page that tried would be blocked, not silently phone home.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["ASSETS", "PAGE_HEADERS", "Dashboard"]

# Path served -> (file in qoper8/_daemon/dashboard/, content type). The route table in
# ``openapi`` names the same paths; a test checks the two agree.
ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change only with the package; a reload after an upgrade gets the new ones.
    "Cache-Control": "no-cache",
}


class Dashboard:
    """The page's files, read once from the package."""

    def __init__(self) -> None:
        folder = resources.files(__package__ or "qoper8._daemon").joinpath("dashboard")
        self._files = {
            path: (folder.joinpath(name).read_bytes(), content_type)
            for path, (name, content_type) in ASSETS.items()
        }

    async def serve(self, request: web.Request) -> web.Response:
        body, content_type = self._files[request.path]
        return web.Response(body=body, headers={**PAGE_HEADERS, "Content-Type": content_type})
