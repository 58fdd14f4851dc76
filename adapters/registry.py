"""Adapter classes by the name a channel's `adapter` field gives, so a channel's data alone
decides which protocol it speaks."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import asyncpg

from adapters.base import ChannelAdapter
from adapters.ethereum import EthereumAdapter
from adapters.simulator import SimulatorAdapter
from adapters.stripe import StripeAdapter
from domain.channels import ChannelSpec

AdapterFactory = Callable[[ChannelSpec, aiohttp.ClientSession], ChannelAdapter]

ADAPTERS: dict[str, AdapterFactory] = {
    "simulator": SimulatorAdapter,
    "stripe": StripeAdapter,
    "ethereum": EthereumAdapter,
}
# Protocols whose orders are kept in our own database (deposit addresses), not at a provider.
WITH_DATABASE = frozenset({"ethereum"})
# The credentials each protocol needs (its adapter says): a channel is refused without them.
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "simulator": SimulatorAdapter.CREDENTIALS,
    "stripe": StripeAdapter.CREDENTIALS,
    "ethereum": EthereumAdapter.CREDENTIALS,
}


def build_adapter(
    spec: ChannelSpec, session: aiohttp.ClientSession, pg: asyncpg.Pool | None = None
) -> ChannelAdapter:
    try:
        factory = ADAPTERS[spec.adapter]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(
            f"channel {spec.code!r}: unknown adapter {spec.adapter!r} (known: {known})"
        ) from None
    if spec.adapter in WITH_DATABASE:
        return EthereumAdapter(spec, session, pg)
    return factory(spec, session)
