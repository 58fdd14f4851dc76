"""The one way Juhe opens Redis: commands packed by hiredis's C encoder, a bounded pool that
waits for a free connection, and the server's generation learnt on every connect.

redis-py's asyncio client packs every command in Python (its sync client can use hiredis, the
asyncio one cannot); on the create path that packing was about 8 % of the gateway's CPU.

A pool without a bound opens a connection per concurrent command (a channel pool with 1,600
items in flight would open 1,600); one with a bound that fails when it is empty fails items for
nothing. Here the bound comes from the settings and a command waits for a connection.

The generation is the server's `run_id`, new at every start: a Redis that restarted (from its
append-only file, which may lack the last second of writes) or failed over to a replica has a
new one. Hot copies record the generation they were written under, and a reader distrusts a copy
from an earlier one (infra.hotstore).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import DataError

# run_id of each server this process talks to, by address, as of its latest connection
_generations: dict[str, str] = {}


def address(parts: dict[str, Any]) -> str:
    return str(parts.get("path") or f"{parts.get('host', 'localhost')}:{parts.get('port', 6379)}")


def run_id(info: bytes | str) -> str:
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line[7:].strip()
    return ""


def learn_generation(where: str, info: bytes | str) -> None:
    _generations[where] = run_id(info)


def generation_at(where: str) -> str:
    """The generation of the server at `where`, as of this process's latest connection to it
    ("" before the first)."""
    return _generations.get(where, "")


def generation(client: Redis) -> str:
    return generation_at(address(client.connection_pool.connection_kwargs))


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str):
            head = head.encode()
        # Literal arguments in the command name ("CLIENT SETNAME") go as separate arguments.
        args = (*head.split(), *args[1:]) if b" " in head else (head, *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


class _Generation:
    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health)  # type: ignore[misc]
        await self.send_command("INFO", "server", check_health=check_health)  # type: ignore[attr-defined]
        kwargs = {"host": getattr(self, "host", None), "port": getattr(self, "port", None)}
        kwargs["path"] = getattr(self, "path", None)
        learn_generation(address(kwargs), await self.read_response())  # type: ignore[attr-defined]


class _TcpConnection(_Generation, _HiredisPacking, Connection):
    pass


class _TlsConnection(_Generation, _HiredisPacking, SSLConnection):
    pass


class _UnixConnection(_Generation, _HiredisPacking, UnixDomainSocketConnection):
    pass


_BY_SCHEME = {"redis": _TcpConnection, "rediss": _TlsConnection, "unix": _UnixConnection}


def connect(url: str, max_connections: int = 64, **options: Any) -> Redis:
    """A client whose pool holds at most `max_connections` and makes a command wait for one.

    A command on a pooled connection that the server closed (it restarted) reconnects and runs
    again, twice at most within about 30 ms: without that, every stale connection in the pool
    failed one command after Redis came back. A Redis that is really down still fails fast."""
    options.setdefault("retry", Retry(ExponentialBackoff(cap=0.02, base=0.01), 2))
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        connection_class=_BY_SCHEME[urlsplit(url).scheme],
        **options,
    )
    return Redis(connection_pool=pool)
