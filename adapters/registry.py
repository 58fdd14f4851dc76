"""Adapter classes by the name a channel's settings give in `adapter`, so configuration alone
decides which protocol a channel speaks."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from adapters.base import ChannelAdapter
from adapters.simulator import SimulatorAdapter
from config.settings import Channel

AdapterFactory = Callable[[str, Channel, aiohttp.ClientSession], ChannelAdapter]

ADAPTERS: dict[str, AdapterFactory] = {
    "simulator": SimulatorAdapter,
}


def build_adapter(code: str, settings: Channel, session: aiohttp.ClientSession) -> ChannelAdapter:
    try:
        factory = ADAPTERS[settings.adapter]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(
            f"channel {code!r}: unknown adapter {settings.adapter!r} (known: {known})"
        ) from None
    return factory(code, settings, session)
