"""Adapter classes by the name a channel's `adapter` field gives, so a channel's data alone
decides which protocol it speaks."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from adapters.base import ChannelAdapter
from adapters.simulator import SimulatorAdapter
from adapters.stripe import StripeAdapter
from domain.channels import ChannelSpec

AdapterFactory = Callable[[ChannelSpec, aiohttp.ClientSession], ChannelAdapter]

ADAPTERS: dict[str, AdapterFactory] = {
    "simulator": SimulatorAdapter,
    "stripe": StripeAdapter,
}
# The credentials each protocol needs (its adapter says): a channel is refused without them.
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "simulator": SimulatorAdapter.CREDENTIALS,
    "stripe": StripeAdapter.CREDENTIALS,
}


def build_adapter(spec: ChannelSpec, session: aiohttp.ClientSession) -> ChannelAdapter:
    try:
        factory = ADAPTERS[spec.adapter]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(
            f"channel {spec.code!r}: unknown adapter {spec.adapter!r} (known: {known})"
        ) from None
    return factory(spec, session)
