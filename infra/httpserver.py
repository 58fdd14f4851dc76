"""What Juhe's HTTP servers say about themselves: `Server: juhe`, never aiohttp's default,
which names the Python and aiohttp versions and so the known bugs worth trying; and what every
response tells a browser (`protect`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from aiohttp import web, web_response

SERVER_NAME = "juhe"
# what Juhe's own requests (webhooks to merchants, calls to channels) say about the client
OUTGOING_HEADERS = {"User-Agent": SERVER_NAME}


async def _name_server(_: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


def hide_versions(app: web.Application) -> web.Application:
    """Every response the app prepares (errors and the router's 404 and 405 included) names
    the server only; call before the app starts."""
    app.on_response_prepare.append(_name_server)
    # A request aiohttp cannot parse (a bad request line or header) is answered before it
    # reaches any app, with the module's default and no public setting for it; the test sends
    # one, so a renamed default cannot go unnoticed.
    web_response.SERVER_SOFTWARE = SERVER_NAME
    return app


_NONE = "'none'"


def protect(
    app: web.Application, *, styles: Iterable[str] = (), own_scripts: bool = False
) -> web.Application:
    """Every response: `nosniff`, and `no-store` unless the handler chose its caching (pages
    and API answers show payments). HTML pages also: never framed (clickjacking), no referrer
    (a checkout URL names its payment), and a Content-Security-Policy that allows no style but
    each of the app's inline stylesheets in `styles`, by its SHA-256 hash, and no script but
    files the app itself serves (`own_scripts`; otherwise none): nothing injected into a page
    can script or style it."""
    allowed = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()}'"
        for css in styles
    )
    page = {
        "Content-Security-Policy": f"default-src 'none'; style-src {allowed or _NONE}; "
        + ("script-src 'self'; " if own_scripts else "")
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }

    async def headers(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-store")
        if response.content_type == "text/html":
            response.headers.update(page)

    app.on_response_prepare.append(headers)
    return app
