"""What Juhe's HTTP servers say about themselves: `Server: juhe`, never aiohttp's default,
which names the Python and aiohttp versions and so the known bugs worth trying."""

from __future__ import annotations

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
