"""The baseline every gateway figure is divided by: a bare aiohttp + uvloop handler that parses
a JSON POST body and answers JSON, with nothing else (no auth, no Redis, no validation)."""

from __future__ import annotations

import argparse

import orjson
import uvloop
from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    payload = orjson.loads(await request.read())
    return web.Response(
        body=orjson.dumps({"id": "base_1", "object": "echo", "received": payload}),
        status=201,
        content_type="application/json",
    )


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/{tail:.*}", echo)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        app(),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        reuse_port=True,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
