"""Block and allow lists: which entries a transaction's values hit.

A block entry rejects outright; an allow entry lets a payment through that rules or its score
would send to review or reject (never past a block entry or a `reject` rule). Entries expire
by their own time, checked at each match, so an expired entry stops matching without a reload.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class ListName(StrEnum):
    BLOCK = "block"
    ALLOW = "allow"


class Kind(StrEnum):
    IP = "ip"  # an address or a CIDR range
    EMAIL = "email"
    DOMAIN = "domain"  # of the customer's e-mail
    DEVICE = "device"
    CARD = "card"  # card fingerprint
    BIN = "bin"
    COUNTRY = "country"  # the IP's, the card's or the declared one
    CUSTOMER = "customer"


_BIN = re.compile(r"^[0-9]{6,8}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,62}\.)+[a-z0-9\-]{1,63}$")


def normalize(kind: Kind, value: str) -> str:
    """The stored form of an entry's value; ValueError says what is wrong with it."""
    value = value.strip()
    match kind:
        case Kind.IP:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError("not an IP address or CIDR range") from None
            one = network.num_addresses == 1 and "/" not in value
            return str(network.network_address) if one else str(network)
        case Kind.EMAIL:
            if len(value) > 254 or not re.match(r"^[^@\s]+@[^@\s]+$", value):
                raise ValueError("not an e-mail address")
            return value.lower()
        case Kind.DOMAIN:
            value = value.lower().lstrip("@")
            if not _DOMAIN.match(value):
                raise ValueError("not a domain name")
            return value
        case Kind.BIN:
            if not _BIN.match(value):
                raise ValueError("a BIN is 6 to 8 digits")
            return value
        case Kind.COUNTRY:
            if not _COUNTRY.match(value.upper()):
                raise ValueError("a country is its ISO 3166-1 alpha-2 code")
            return value.upper()
        case _:
            if not _TOKEN.match(value):
                raise ValueError("1–128 letters, digits and _ . : -")
            return value


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    list: ListName
    kind: Kind
    value: str
    reason: str | None = None
    expires_at: float | None = None  # unix seconds

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Hit:
    list: ListName
    kind: Kind
    entry: str  # the entry's id: the value itself may be personal data


class ListIndex:
    """All entries of both lists, indexed for one lookup per value."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.exact: dict[tuple[Kind, str], list[Entry]] = {}
        self.networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Entry]] = []
        for entry in entries:
            if entry.kind is Kind.IP and "/" in entry.value:
                self.networks.append((ipaddress.ip_network(entry.value), entry))
            else:
                self.exact.setdefault((entry.kind, entry.value), []).append(entry)

    def __len__(self) -> int:
        return sum(len(v) for v in self.exact.values()) + len(self.networks)

    def hits(self, values: Mapping[Kind, Iterable[str]], now: float) -> list[Hit]:
        found: list[Entry] = []
        for kind, candidates in values.items():
            for value in candidates:
                if value:
                    found.extend(self.exact.get((kind, value), ()))
        ips = [v for v in values.get(Kind.IP, ()) if v]
        if self.networks and ips:
            for raw in ips:
                try:
                    address = ipaddress.ip_address(raw)
                except ValueError:
                    continue
                found.extend(
                    e
                    for net, e in self.networks
                    if address.version == net.version and address in net
                )
        return [Hit(e.list, e.kind, e.id) for e in found if e.live(now)]


EMPTY_LISTS = ListIndex(())
