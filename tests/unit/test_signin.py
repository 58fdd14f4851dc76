"""Sign-in throttling (domain/signin.py): growing waits per scope, and the account-wide count
holding back only clients new to the account."""

from __future__ import annotations

import pytest

from domain.signin import (
    Budgets,
    Failures,
    client_of,
    device_digest,
    needs_step_up,
    retry_after,
    scopes,
    wait_s,
)

NOW = 1_800_000_000.0
BUDGETS = Budgets(client_account=5, account=10, client=50, max_wait_s=900)


def test_no_wait_within_the_free_budget() -> None:
    for count in range(5):
        assert wait_s(5, Failures(count, NOW), NOW, 900) == 0


@pytest.mark.parametrize(("count", "wait"), [(5, 5), (6, 10), (7, 20), (10, 160), (13, 900)])
def test_each_failure_past_the_budget_doubles_the_wait_up_to_the_cap(count: int, wait: int) -> None:
    assert wait_s(5, Failures(count, NOW), NOW, 900) == wait
    assert wait_s(5, Failures(count, NOW - 3), NOW, 900) == wait - 3, "counted from the latest"
    assert wait_s(5, Failures(count, NOW - 900), NOW, 900) == 0, "waited out"


def test_a_huge_count_still_waits_only_the_cap() -> None:
    assert wait_s(5, Failures(10_000, NOW), NOW, 900) == 900


def test_the_account_wide_count_holds_back_new_clients_only() -> None:
    quiet, flooded = Failures(0), Failures(40, NOW)
    assert retry_after(BUDGETS, quiet, quiet, flooded, known_client=False, now=NOW) == 900
    assert retry_after(BUDGETS, quiet, quiet, flooded, known_client=True, now=NOW) == 0
    own = Failures(5, NOW)
    assert retry_after(BUDGETS, quiet, own, flooded, known_client=True, now=NOW) == 5, (
        "a known client's own failures still count"
    )
    busy = Failures(50, NOW)
    assert retry_after(BUDGETS, busy, quiet, quiet, known_client=True, now=NOW) == 5


def test_scopes_name_clients_and_accounts_without_the_address() -> None:
    first = scopes("203.0.113.7", "Alice@Example.com")
    assert "alice" not in "".join(first.all()).lower()
    assert first == scopes("203.0.113.7", " alice@example.com")
    elsewhere = scopes("198.51.100.1", "alice@example.com")
    assert elsewhere.account == first.account
    assert elsewhere.client != first.client and elsewhere.client_account != first.client_account
    assert scopes("203.0.113.7", "bob@example.com").client == first.client


def test_an_ipv6_client_is_its_64() -> None:
    assert client_of("2001:db8:1:2:aaaa::1") == client_of("2001:db8:1:2:bbbb::9")
    assert client_of("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_of("2001:db8:1:3::1") != client_of("2001:db8:1:2::1")
    assert client_of("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_of("192.0.2.1") == "192.0.2.1"
    assert client_of("") == ""


def test_a_new_device_or_country_or_a_failure_burst_asks_for_mfa() -> None:
    for flags in ({"new_country"}, {"new_device"}, {"failure_burst"}, {"new_ip", "new_device"}):
        assert needs_step_up(flags, mfa_passed=False), flags
        assert not needs_step_up(flags, mfa_passed=True), "passed MFA already"
    assert not needs_step_up({"new_ip"}, mfa_passed=False), "a new IP alone is only flagged"
    assert not needs_step_up(set(), mfa_passed=False)


def test_a_device_id_is_kept_as_a_digest() -> None:
    kept = device_digest("d3v1c3-fingerprint")
    assert kept == device_digest("d3v1c3-fingerprint") != device_digest("another-device")
    assert "fingerprint" not in kept and len(kept) == 32
