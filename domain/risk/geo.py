"""The country of an IP address from a local range table: nothing is looked up over the network
while payments are judged. The table is `start,end,country` rows (first and last address of
each range, IPv4 or IPv6), the shape of the free IP-to-country CSV exports; Juhe ships a small
sample (config/ip_country.csv) and `risk.ip_country_table` points at a full one."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from typing import NamedTuple


class CountryTable:
    def __init__(self, rows: Iterable[tuple[str, str, str]]) -> None:
        ranges = []
        for start, end, country in rows:
            low, high = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
            if low.version != high.version or int(low) > int(high):
                raise ValueError(f"bad range {start}–{end}")
            ranges.append((low.version, int(low), int(high), country.strip().upper()))
        ranges.sort()
        self._starts = [(v, lo) for v, lo, _, _ in ranges]
        self._ranges = ranges

    def __len__(self) -> int:
        return len(self._ranges)

    def country(self, ip: str | None) -> str | None:
        if not ip:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        key = (address.version, int(address))
        n = bisect.bisect_right(self._starts, key) - 1
        if n < 0:
            return None
        version, _, high, country = self._ranges[n]
        return country if version == address.version and key[1] <= high else None


class BinTable:
    """The issuing country of a card from its BIN (the first six to eight digits) by the
    longest prefix in a local `prefix,country` table, so a rule can compare the card's country
    with the IP's when the merchant or channel did not say it."""

    def __init__(self, rows: Iterable[tuple[str, str]]) -> None:
        self._prefixes: dict[str, str] = {}
        for prefix, country in rows:
            prefix = prefix.strip()
            if not prefix.isdigit() or len(prefix) > 8:
                raise ValueError(f"bad BIN prefix {prefix!r}")
            self._prefixes[prefix] = country.strip().upper()
        self._lengths = sorted({len(p) for p in self._prefixes}, reverse=True)

    def __len__(self) -> int:
        return len(self._prefixes)

    def country(self, card_bin: str | None) -> str | None:
        if not card_bin:
            return None
        for length in self._lengths:
            found = self._prefixes.get(card_bin[:length])
            if found is not None:
                return found
        return None


class Geo(NamedTuple):
    """The local tables a decision reads countries from."""

    ips: CountryTable
    bins: BinTable
