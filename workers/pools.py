"""Running one pool as a process: connections, the pool's actors, a metrics endpoint, and a
clean stop on SIGTERM/SIGINT. A process imports only its own pool's module (`workers.<name>`):
the chain watcher's libraries alone take two seconds to import."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from config import Settings
from infra import metrics
from infra.httpserver import hide_versions
from infra.invalidation import follow
from workers.context import Context
from workers.supervisor import POOL_NAMES

log = logging.getLogger("juhe.pool")


def pool_main(name: str) -> Callable[[Context], Awaitable[None]]:
    if name not in POOL_NAMES:
        raise ValueError(f"no pool {name!r} (known: {', '.join(POOL_NAMES)})")
    run: Callable[[Context], Awaitable[None]] = importlib.import_module(f"workers.{name}").run
    return run


async def metrics_handler(_: web.Request) -> web.Response:
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def serve_metrics(port: int) -> web.AppRunner:
    """The pool's own /metrics. A taken port costs the endpoint, never the pool: its figures
    still reach the gateway's /metrics through the shared multiprocess directory."""
    app = hide_versions(web.Application())
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
    except OSError as exc:
        log.error(
            "metrics port unavailable; serving no /metrics of its own",
            extra={"port": port, "error": str(exc)},
        )
    return runner


async def run_pool(name: str, settings: Settings) -> None:
    main = pool_main(name)  # imported before the pool says it started: it takes work at once
    ctx = await Context.open(settings)
    port = settings.supervisor.metrics_port_base + POOL_NAMES.index(name)
    port += 10 * int(os.environ.get("JUHE_WORKER_INDEX", "0"))
    runner = await serve_metrics(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("pool started", extra={"pool": name, "metrics_port": port})
    metrics.pool_started.labels(name).set(1)
    following = asyncio.create_task(follow(ctx.redis, ctx.keys, registry=ctx.channels))
    task = asyncio.create_task(main(ctx))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
    finally:
        for pending in (task, stopper, following):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        await runner.cleanup()
        await ctx.close()
        log.info("pool stopped", extra={"pool": name})
