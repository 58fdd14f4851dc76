"""The one way Juhe opens Redis: commands packed by hiredis's C encoder.

redis-py's asyncio client packs every command in Python (its sync client can use hiredis, the
asyncio one cannot); on the create path that packing was about 8 % of the gateway's CPU.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError


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


class _TcpConnection(_HiredisPacking, Connection):
    pass


class _TlsConnection(_HiredisPacking, SSLConnection):
    pass


class _UnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_BY_SCHEME = {"redis": _TcpConnection, "rediss": _TlsConnection, "unix": _UnixConnection}


def connect(url: str, **options: Any) -> Redis:
    client = Redis.from_url(url, **options)
    client.connection_pool.connection_class = _BY_SCHEME[urlsplit(url).scheme]
    return client
