"""How long a sign-in must wait after failed ones, so that guessing is slow but a stranger
cannot lock a real user out.

Failures are counted three ways: per client (its IP address; an IPv6 client by its /64, which
one holder usually has), per client and account, and per account from any client. Past each
count's free budget every further attempt waits: 5 s after the latest failure, twice as long
after each failure more, up to a cap. The account-wide count holds back only clients the
account has never signed in from, so however many failures strangers pile up, the right
password from the user's usual client still gets through. Accounts are counted by the e-mail
address asked for, whether or not it exists, so no wait tells which accounts exist.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

FIRST_WAIT_S = 5


@dataclass(frozen=True, slots=True)
class Budgets:
    """Failures allowed before attempts wait, per scope, and the longest wait (which is also
    how long a failure is remembered)."""

    client_account: int
    account: int
    client: int
    max_wait_s: int


@dataclass(frozen=True, slots=True)
class Failures:
    count: int
    latest: float = 0.0  # unix time of the latest failure


@dataclass(frozen=True, slots=True)
class Scopes:
    """The names the three counts are kept under (no e-mail address in them)."""

    client: str
    client_account: str
    account: str

    def all(self) -> tuple[str, str, str]:
        return (self.client, self.client_account, self.account)


def client_of(ip: str) -> str:
    """The client an address stands for: itself, or for IPv6 its /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def scopes(ip: str, email: str) -> Scopes:
    client, account = client_of(ip), email.strip().lower()
    return Scopes(
        client=f"signin:client:{client}",
        client_account=f"signin:pair:{_digest(client, account)}",
        account=f"signin:account:{_digest(account)}",
    )


def wait_s(free: int, failures: Failures, now: float, max_wait_s: int) -> int:
    """Whole seconds before another attempt may go ahead (0: at once)."""
    over = failures.count - free
    if over < 0:
        return 0
    delay = min(max_wait_s, FIRST_WAIT_S * 2 ** min(over, 32))
    return max(0, math.ceil(failures.latest + delay - now))


def retry_after(
    budgets: Budgets,
    client: Failures,
    client_account: Failures,
    account: Failures,
    *,
    known_client: bool,
    now: float,
) -> int:
    """The wait for an attempt: the longest of its scopes' waits; the account-wide one only for
    a client the account has not signed in from before."""
    cap = budgets.max_wait_s
    waits = [
        wait_s(budgets.client, client, now, cap),
        wait_s(budgets.client_account, client_account, now, cap),
    ]
    if not known_client:
        waits.append(wait_s(budgets.account, account, now, cap))
    return max(waits)


# What makes a sign-in ask for MFA even where the platform made it optional (seed §7.3); a new
# IP alone is flagged but asks for nothing more.
STEP_UP = frozenset({"new_country", "new_device", "failure_burst"})


def device_digest(device: str) -> str:
    """What is kept of the portal's device id: a digest, so the store holds no fingerprint."""
    return _digest("device", device)


def needs_step_up(flags: set[str], mfa_passed: bool) -> bool:
    """Whether this session may do nothing until its user passes MFA (enrols, if they have no
    factor yet): it was flagged for a reason in `STEP_UP` and did not pass MFA already."""
    return not mfa_passed and bool(flags & STEP_UP)
