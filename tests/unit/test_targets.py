"""Where webhooks may go (domain/targets.py), and that every notify URL a request can set is
checked (gateway.state.decode)."""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import pkgutil
import socket

import msgspec
import pytest

import gateway
from domain.targets import (
    UnsafeTarget,
    check_target,
    delivery_target,
    inet_aton_address,
    public_address,
)
from gateway import agent_schemas
from gateway.errors import ApiError
from gateway.state import ALLOW_PRIVATE_TARGETS, decode, target_fields

REFUSED = [
    # loopback, and its other spellings
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8090/_sim/webhooks",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://127.0.0.1./",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
    "http://localhost/",
    "http://LocalHost./",
    "http://app.localhost/",
    # private, shared, link-local and unique-local ranges; cloud metadata
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.10/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.goog/",
    "http://metadata/",
    "http://redis:6379/",
    "http://printer.local/",
    "http://router.home.arpa/",
    # credentials, other schemes, and what two parsers could read differently
    "http://user:pass@example.com/",
    "http://example.com@127.0.0.1/",
    "https://user@example.com/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http://example.com\\@127.0.0.1/",
    "http://exa mple.com/",
    "http://example.com/\n",
    "http:///no-host",
    "http://example.com:99999/",
    "http://example.com:port/",
    "http://127.0.0.08/",
    "http://1.2.3.0x/",
    "http://a..b/",
]

TAKEN = [
    "https://tea.example/hooks",
    "https://hooks.example.com:8443/juhe?merchant=a@b.example",
    "http://93.184.216.34/hook",
    "http://[2606:4700:4700::1111]/hook",
    "https://münchen.example/hook",
    "https://example.com./hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_and_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=False)


@pytest.mark.parametrize("url", TAKEN)
def test_public_targets_are_taken(url: str) -> None:
    check_target(url, allow_private=False)
    delivery_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8090/_sim/webhooks", "http://localhost:9/", "http://10.0.0.5/"]
)
def test_development_allows_private_targets(url: str) -> None:
    check_target(url, allow_private=True)


@pytest.mark.parametrize(
    "url", ["http://user:pass@127.0.0.1/", "http://127.1/", "ftp://127.0.0.1/", "http://0x7f.1/"]
)
def test_development_still_refuses_credentials_schemes_and_odd_spellings(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=True)


def test_at_delivery_a_name_is_left_to_the_resolver_but_an_address_is_checked() -> None:
    """A name's spelling proves nothing by then: what it resolves to is checked as it
    connects (infra/egress.py)."""
    assert delivery_target("http://localhost:9/", allow_private=False).host == "localhost"
    with pytest.raises(UnsafeTarget, match=r"127\.0\.0\.1 is not a public address"):
        delivery_target("http://127.0.0.1:9/", allow_private=False)


def test_a_numeric_host_is_refused_with_the_address_it_means() -> None:
    with pytest.raises(UnsafeTarget, match=r"0x7f\.1 is the address 127\.0\.0\.1"):
        check_target("http://0x7f.1/", allow_private=False)


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "1.2.3", "0", "0x7f000001", "10.0.0.1"],
)
def test_numeric_hosts_mean_what_inet_aton_says(host: str) -> None:
    assert str(inet_aton_address(host)) == socket.inet_ntoa(socket.inet_aton(host))


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "08", "0x", "example.com", ""])
def test_hosts_inet_aton_refuses_are_not_addresses(host: str) -> None:
    assert inet_aton_address(host) is None


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1", True),
        ("2002:808:808::1", True),  # 6to4 of a public address
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("198.18.0.1", False),
        ("::ffff:8.8.8.8", False),
        ("64:ff9b::808:808", False),
        ("fec0::1", False),
        ("ff02::1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert public_address(ipaddress.ip_address(address)) is public


def _request_structs() -> list[type[msgspec.Struct]]:
    """Every struct of every schema module of the gateway (`gateway.schemas`, `*_schemas`)."""
    modules = [
        importlib.import_module(f"gateway.{m.name}")
        for m in pkgutil.iter_modules(gateway.__path__)
        if m.name == "schemas" or m.name.endswith("_schemas")
    ]
    return [
        kind
        for module in modules
        for _, kind in inspect.getmembers(module, inspect.isclass)
        if issubclass(kind, msgspec.Struct) and kind.__module__ == module.__name__
    ]


def test_every_notify_url_a_request_can_set_is_a_checked_target() -> None:
    carrying = {k for k in _request_structs() if "notify_url" in k.__struct_fields__}
    assert {k.__name__ for k in carrying} >= {
        "CreatePayment",
        "RegisterMerchant",
        "PaymentConfig",
        "SubMerchant",
    }
    for kind in carrying:
        assert "notify_url" in target_fields(kind), kind


def test_decode_refuses_an_unsafe_notify_url_naming_the_field() -> None:
    body = b'{"type":"merchant","name":"Tea","notify_url":"http://169.254.169.254/"}'
    kind: type = agent_schemas.Subordinate  # a tagged union: decode looks at what it decoded
    with pytest.raises(ApiError) as info:
        decode(body, kind)
    error = info.value
    assert (error.status, error.code, error.param) == (400, "unsafe_url", "notify_url")
    assert "169.254.169.254 is not a public address" in error.message
    token = ALLOW_PRIVATE_TARGETS.set(True)  # what the edge sets in development
    try:
        assert decode(body, kind).notify_url == "http://169.254.169.254/"
    finally:
        ALLOW_PRIVATE_TARGETS.reset(token)
