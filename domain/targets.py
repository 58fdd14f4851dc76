"""Where Juhe may POST a merchant's webhooks: a public http(s) host, never one inside the
network Juhe runs in. A notify URL is chosen by whoever holds a merchant's key, so without this
rule the notify pool would fetch loopback, private and cloud-metadata addresses for them (SSRF).

`check_target` is the rule at the edge, when a URL is given: its syntax, an address written in
it, and host names that only ever mean something internal. A name can resolve anywhere and DNS
can change after the check, so at delivery the notify pool applies `delivery_target` and checks
every address the name resolves to then (`public_address`, in `infra/egress.py`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Suffixes (and the names themselves) that resolve only inside a network: RFC 6761 `localhost`,
# mDNS `.local`, ICANN's private-use `.internal` (GCP's metadata.google.internal, AWS's
# ec2.internal), `.home.arpa` and the common `.localdomain`; plus GCP's metadata alias.
_INTERNAL_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa")
_INTERNAL_NAMES = frozenset({"metadata.goog"})
# What inet_aton (and so getaddrinfo) reads as an IPv4 address: one to four parts, each decimal,
# octal (a leading 0) or hexadecimal (0x), e.g. 2130706433, 0177.0.0.1, 0x7f.1 and 127.1.
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
# A last label that is a number: the host is meant as an address, and names never end so.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class UnsafeTarget(ValueError):
    """The URL may not receive webhooks; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # lower case, IDNA-encoded, without a trailing dot
    address: Address | None  # when the host is an IP address


def inet_aton_address(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `host` means to inet_aton, in whatever form it is written; None for a
    host that is not a number in any of its forms."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    values = [int(p, 16 if p[:2] in ("0x", "0X") else 8 if p[0] == "0" else 10) for p in parts]
    # The last part fills every byte the earlier ones leave: a.b.c is 8.8.16 bits, a.b 8.24.
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for n, value in enumerate(leading):
        number |= value << (24 - 8 * n)
    return ipaddress.IPv4Address(number)


def public_address(address: Address) -> bool:
    """Reachable on the public internet: not loopback, private, link-local (169.254.169.254,
    fe80::/10), shared, unique-local (fc00::/7), site-local, reserved or multicast; an IPv6
    address that carries an IPv4 one (IPv4-mapped, 6to4) is judged by that one too."""
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return public_address(embedded)
    return True


def parse_target(url: str) -> Target:
    """The host of an http(s) URL that can receive webhooks, or UnsafeTarget: no credentials
    in it (`user:pass@`), no IPv4 address in a form other than dotted decimal, and nothing two
    URL parsers could read differently (backslashes, spaces, control characters)."""
    if "\\" in url or " " in url or not url.isprintable():
        raise UnsafeTarget("the URL may not contain backslashes, spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise UnsafeTarget(f"the URL cannot be parsed: {exc}") from None
    if "@" in parts.netloc:
        raise UnsafeTarget("the URL may not carry credentials (user:password@)")
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("the URL must be http or https")
    host = (parts.hostname or "").removesuffix(".")
    if not host:
        raise UnsafeTarget("the URL has no host")
    if parts.netloc.startswith("["):
        if "%" in host:
            raise UnsafeTarget("the URL may not name an IPv6 zone")
        try:
            return Target(host, ipaddress.IPv6Address(host))
        except ValueError:
            raise UnsafeTarget(f"{host} is not an IPv6 address") from None
    if (numeric := inet_aton_address(host)) is not None:
        if str(numeric) != host:
            raise UnsafeTarget(
                f"{host} is the address {numeric} written another way; write {numeric}"
            )
        return Target(host, numeric)
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        raise UnsafeTarget(f"{host} is not an IPv4 address")
    try:
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeTarget(f"{host} is not a valid host name") from None
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise UnsafeTarget(f"{host} is not a valid host name")
    return Target(name, None)


def internal_name(name: str) -> bool:
    """A host name that means a machine inside the network: one label only (`redis`,
    `metadata`), or a name under a suffix that never resolves on the public internet."""
    return (
        "." not in name
        or name in _INTERNAL_NAMES
        or any(name == s or name.endswith("." + s) for s in _INTERNAL_SUFFIXES)
    )


def delivery_target(url: str, *, allow_private: bool) -> Target:
    """The rule just before a webhook is POSTed (to a URL stored long ago, perhaps under older
    rules): `parse_target`, and an address written in the URL must be public. A host name is
    judged by the addresses it resolves to at connection time (`infra.egress`), not by its
    spelling: DNS can change between the check and the delivery."""
    target = parse_target(url)
    if not allow_private and target.address is not None and not public_address(target.address):
        raise UnsafeTarget(f"{target.address} is not a public address")
    return target


def check_target(url: str, *, allow_private: bool) -> Target:
    """The rule for a notify URL when it is given: `delivery_target`, and unless private
    targets are allowed (local development, whose receivers listen on loopback) a host name
    that is not an internal one."""
    target = delivery_target(url, allow_private=allow_private)
    if not allow_private and target.address is None and internal_name(target.host):
        raise UnsafeTarget(f"{target.host} is not a public host name")
    return target
