"""Adapter classes by the name a channel's `adapter` field gives, so a channel's data alone
decides which protocol it speaks. Each protocol's module is imported the first time a channel
speaks it: every process builds the registry, and the Ethereum adapter's libraries alone take
longer to import than the rest of a pool."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

import aiohttp
import asyncpg

from adapters.base import ChannelAdapter
from domain.channels import ChannelSpec

# Where each protocol's adapter class lives: "module:Class".
ADAPTERS: dict[str, str] = {
    "simulator": "adapters.simulator:SimulatorAdapter",
    "stripe": "adapters.stripe:StripeAdapter",
    "ethereum": "adapters.ethereum:EthereumAdapter",
    "bitcoin": "adapters.bitcoin:BitcoinAdapter",
}
# Protocols whose orders are kept in our own database (deposit addresses), not at a provider.
WITH_DATABASE = frozenset({"ethereum", "bitcoin"})
# Protocols whose deposits the chain watcher follows (adapters.base.ChainWatching).
CHAIN_ADAPTERS = frozenset({"ethereum", "bitcoin"})


@cache
def adapter_class(adapter: str) -> Callable[..., ChannelAdapter]:
    try:
        module, name = ADAPTERS[adapter].split(":")
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(f"unknown adapter {adapter!r} (known: {known})") from None
    cls: Callable[..., ChannelAdapter] = getattr(importlib.import_module(module), name)
    return cls


def credentials(adapter: str) -> tuple[str, ...]:
    """The credentials a protocol needs (its adapter says): a channel is refused without them."""
    needed: tuple[str, ...] = adapter_class(adapter).CREDENTIALS
    return needed


def build_adapter(
    spec: ChannelSpec, session: aiohttp.ClientSession, pg: asyncpg.Pool | None = None
) -> ChannelAdapter:
    try:
        factory = adapter_class(spec.adapter)
    except ValueError as exc:
        raise ValueError(f"channel {spec.code!r}: {exc}") from None
    if spec.adapter in WITH_DATABASE:
        return factory(spec, session, pg)
    return factory(spec, session)
