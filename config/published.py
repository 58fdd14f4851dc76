"""Secrets whose values are published in this repository, and which of them a node would use.

The packaged TOML files hold working secrets so that a local node runs with no set-up: the
sealing keys under ``[secrets]`` and the ``api_key`` and ``secret`` of each ``[channels.*]``
entry. Anyone can read them here, so outside the development profile a node refuses to start
while it uses one: in its settings, or in a channel's stored credentials (a database first
seeded from these defaults). The comparison is by value, so a published key under another id,
or a published channel secret given to another channel, is caught too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from config.settings import Settings

PACKAGED = Path(__file__).parent
CHANNEL_SECRETS = ("api_key", "secret")
SIGNER_SECRETS = ("key", "token", "deposit_xprv")


def published_values(documents: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The secret values in parsed TOML documents."""
    found: set[str] = set()
    for document in documents:
        found.update(document.get("secrets", {}).get("keys", {}).values())
        for channel in document.get("channels", {}).values():
            found.update(channel[name] for name in CHANNEL_SECRETS if name in channel)
        signer = document.get("signer", {})
        found.update(signer[name] for name in SIGNER_SECRETS if signer.get(name))
    return frozenset(found)


@cache
def packaged() -> frozenset[str]:
    """The secret values of every TOML file shipped in config/."""
    return published_values(tomllib.loads(p.read_text()) for p in sorted(PACKAGED.glob("*.toml")))


def published_settings(settings: Settings, published: frozenset[str]) -> list[str]:
    """The settings (as `section.key` paths) whose values are published."""
    names = [
        f"secrets.keys.{kid}" for kid, key in settings.secrets.keys.items() if key in published
    ]
    names += [
        f"signer.{name}" for name in ("key", "token") if getattr(settings.signer, name) in published
    ]
    for code, channel in settings.channels.items():
        names += [
            f"channels.{code}.{name}"
            for name in CHANNEL_SECRETS
            if getattr(channel, name) in published
        ]
    return sorted(names)


def published_credentials(
    credentials: Mapping[str, Mapping[str, str]], published: frozenset[str]
) -> list[str]:
    """The stored channel credentials, by channel code, whose values are published."""
    return sorted(
        f"channel {code} credential {name}"
        for code, held in credentials.items()
        for name, value in held.items()
        if value in published
    )


def refusal(names: Iterable[str]) -> str:
    """Why the node does not start, naming what to change and never a value."""
    listed = "\n".join(f"  - {name}" for name in names)
    return (
        "juhe: refusing to start with secrets published in the Juhe repository:\n"
        f"{listed}\n"
        "Give each its own value: a sealing key as JUHE_SECRETS__KEYS__<ID> (base64 of 32 random "
        "bytes), a channel's as JUHE_CHANNELS__<CODE>__API_KEY and JUHE_CHANNELS__<CODE>__SECRET, "
        "a stored channel's credentials with `juhe channels update`. Only on a local machine: "
        "JUHE_NODE__PROFILE=development."
    )
