"""Running the gateway: uvloop, one or more processes sharing the port with SO_REUSEPORT."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal

import uvloop
from aiohttp import web

from config import Settings
from gateway.app import create_app
from infra.logs import setup_logging

log = logging.getLogger("juhe.gateway")


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.gateway.host, settings.gateway.port, reuse_port=True, backlog=4096
    )
    await site.start()
    log.info(
        "gateway listening", extra={"host": settings.gateway.host, "port": settings.gateway.port}
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _one(settings: Settings) -> None:
    setup_logging("gateway", settings.logging.level)
    uvloop.run(serve(settings))


def run(settings: Settings, processes: int) -> None:
    """Serve in `processes` processes; the parent only waits and forwards signals."""
    if processes <= 1:
        _one(settings)
        return
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_one, args=(settings,)) for _ in range(processes)]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
