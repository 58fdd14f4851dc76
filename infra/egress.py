"""Connections to hosts a merchant chose (webhooks): only ever to public addresses.

The check is in the resolver the connector uses, so it judges the very addresses the
connection is made to, at the moment it is made: a name that resolved to a public address when
the URL was given and resolves to 127.0.0.1 now (DNS rebinding) is refused. aiohttp does not
resolve an address written in the URL, so the notify pool checks that one before it connects
(`domain.targets.parse_target`); both paths end in `public_address`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from domain.targets import public_address
from infra.httpserver import OUTGOING_HEADERS


class RefusedTarget(OSError):
    """The host resolves to an address webhooks may not go to. An OSError, so aiohttp reports
    it as a failed connection (`ClientConnectorError`, the refusal as its `os_error`)."""


class PublicResolver(AbstractResolver):
    """The default resolver, refusing a host when any address it resolves to is not public:
    connecting to the others could still reach the private one."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        refused = sorted(
            {r["host"] for r in found if not public_address(ipaddress.ip_address(r["host"]))}
        )
        if refused:
            raise RefusedTarget(f"{host} resolves to {', '.join(refused)}, not a public address")
        return found

    async def close(self) -> None:
        await self._inner.close()


@asynccontextmanager
async def webhook_session(allow_private: bool) -> AsyncIterator[aiohttp.ClientSession]:
    """The notify pool's client: every connection through `PublicResolver`, unless private
    targets are allowed (local development). No proxy from the environment (`trust_env` is
    off), so nothing but the resolver decides where a connection goes."""
    resolver = None if allow_private else PublicResolver()
    try:
        async with aiohttp.ClientSession(
            headers=OUTGOING_HEADERS, connector=aiohttp.TCPConnector(resolver=resolver)
        ) as session:
            yield session
    finally:
        if resolver is not None:
            await resolver.close()
