"""Channel callbacks: verified by the channel's adapter, deduplicated, on the stream, 200."""

from __future__ import annotations

import msgspec
from aiohttp import web

from adapters.base import CallbackRejected
from domain.messages import encode
from gateway.errors import ApiError, invalid
from gateway.state import REQUEST_ID, edge


def callback_refused(exc: CallbackRejected) -> ApiError:
    """A callback that failed its adapter's verification (401) or could not be read (400)."""
    status = 401 if exc.code == "invalid_signature" else 400
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    return ApiError(status, kind, exc.code, exc.message)


async def channel_callback(request: web.Request) -> web.Response:
    e = edge(request)
    channel = request.match_info["channel"]
    adapter = e.channels.adapter(channel)
    if adapter is None:
        raise invalid("unknown_channel", f"no channel {channel!r}", "channel", status=404)
    body = await request.read()
    try:
        callback = adapter.parse_callback(request.headers, body)
    except CallbackRejected as exc:
        raise callback_refused(exc) from None
    # A duplicate is answered like the first: the channel only needs to know we have it. An
    # event about nothing we track (None) is acknowledged too, or the channel would resend it.
    if callback is not None:
        callback = msgspec.structs.replace(callback, request_id=request[REQUEST_ID])
        await e.intake.callback(channel, callback.event_id, encode(callback))
    ack = adapter.callback_ack()
    return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)
