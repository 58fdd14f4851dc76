"""Identity and access against the running node: sign-in, MFA, sessions, lockout, rate limits,
anomalies, the admin API, limited API keys, and the audit log."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from cli.admin import AdminError, create_superuser, rotate_signing_key
from domain.access import PERMISSIONS, Realm
from domain.credentials import PasswordRejected
from domain.signin import Failures
from domain.tokens import issue_access_token
from gateway.client import MerchantClient
from infra import agents, audit, identity
from infra.ratelimit import RateLimiter
from tests.conftest import MerchantFactory, wait_status
from tests.portal import (
    PASSWORD,
    Portal,
    make_user,
    platform_setting,
    setting_changes,
    totp_code,
)
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
PERMISSIONS_OF_PLATFORM = {p for p, realms in PERMISSIONS.items() if Realm.PLATFORM in realms}


async def _audit(stack: Stack, action: str, target: str | None = None) -> list[dict]:
    assert stack.pg is not None
    return await audit.query(stack.pg, action=action, target=target, limit=100)


async def test_first_admin_enrols_mfa_before_anything_else(stack: Stack, http) -> None:
    assert stack.pg is not None
    email = f"root-{time.time_ns()}@example.com"
    with pytest.raises(PasswordRejected):
        await create_superuser(stack.pg, email, "short")
    user_id = await create_superuser(stack.pg, email, PASSWORD)
    with pytest.raises(AdminError):
        await create_superuser(stack.pg, email.upper(), PASSWORD)
    admin = Portal(stack, http, user_id, email)
    status, session = await admin.login()
    assert status == 200 and session["mfa"] is False and session["mfa_enrolment_required"]
    status, body = await admin.call("GET", "/api/v1/admin/users")
    assert status == 403 and body["error"]["code"] == "mfa_required"
    assert body["error"]["type"] == "permission_error"
    status, me = await admin.call("GET", "/api/v1/auth/me")
    assert status == 200 and me["mfa"] is False and me["mfa_required"] is True
    before_mfa = admin.access
    enrolment = await admin.enrol_mfa()
    assert enrolment["provisioning_uri"].startswith("otpauth://totp/")
    assert len(enrolment["recovery_codes"]) == 10
    status, body = await admin.call("GET", "/api/v1/admin/users")
    assert status == 200 and any(u["id"] == user_id for u in body["data"])
    status, body = await admin.call("GET", "/api/v1/auth/me", token=before_mfa)
    assert status == 401, "the session that had not passed MFA ended with the enrolment"
    denied = await _audit(stack, "access.denied")
    assert any(r["actor"] == f"user:{user_id}" for r in denied), "the denial was audited"
    assert (await _audit(stack, "user.create", f"user:{user_id}"))[0]["actor"].startswith("cli:")


async def test_mfa_login_needs_a_fresh_code_or_a_recovery_code(stack: Stack, http) -> None:
    user = await make_user(stack, http, Realm.PLATFORM, None, ["operations"])
    assert user.totp_secret
    status, body = await user.login()
    assert status == 401 and body["error"]["code"] == "mfa_required"
    assert body["error"]["param"] == "totp"
    status, body = await user.login(totp="000000")
    assert status == 401 and body["error"]["code"] == "invalid_totp"
    code = totp_code(user.totp_secret, 1)  # the enrolment spent the current step
    status, session = await user.login(totp=code)
    assert status == 200 and session["mfa"] is True, session
    status, body = await user.login(totp=code)
    assert status == 401 and body["error"]["code"] == "invalid_totp", "a code works once"

    # Re-enrolment: nothing changes until a code from the new secret is verified.
    status, enrolment = await user.call("POST", "/api/v1/auth/mfa/enroll")
    assert status == 200
    status, _ = await user.call("POST", "/api/v1/auth/mfa/verify", {"code": "123456"})
    assert status == 400
    status, _ = await user.login()
    assert status == 401, "MFA stays required while a new enrolment is pending"
    status, _ = await user.login(totp=enrolment["recovery_codes"][0])
    assert status == 401, "the new recovery codes are not active yet"
    status, session = await user.login(totp=user.recovery_codes[0])
    assert status == 200, "the old ones still are"
    status, _ = await user.call(
        "POST", "/api/v1/auth/mfa/verify", {"code": totp_code(enrolment["secret"])}
    )
    assert status == 200
    status, _ = await user.login(totp=user.recovery_codes[1])
    assert status == 401, "verified: the old recovery codes are gone"
    status, _ = await user.login(totp=enrolment["recovery_codes"][0])
    assert status == 200


async def test_recovery_code_signs_in_once(stack: Stack, http) -> None:
    user = await make_user(stack, http, Realm.PLATFORM, None, ["finance"], sign_in=False)
    await user.login()
    enrolment = await user.enrol_mfa()
    recovery = enrolment["recovery_codes"][3]
    status, session = await user.login(totp=recovery)
    assert status == 200 and session["mfa"] is True
    status, body = await user.login(totp=recovery)
    assert status == 401 and body["error"]["code"] == "invalid_totp"


async def test_refresh_rotates_and_reuse_revokes_the_family(stack: Stack, http) -> None:
    user = await make_user(stack, http, Realm.PLATFORM, None, ["risk_analyst"])
    first_refresh, first_access = user.refresh, user.access
    status, rotated = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": first_refresh}, token=""
    )
    assert status == 200 and rotated["refresh_token"] != first_refresh and rotated["mfa"] is True
    status, _ = await user.call("GET", "/api/v1/admin/audit", token=rotated["access_token"])
    assert status == 200
    status, body = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": first_refresh}, token=""
    )
    assert status == 401 and body["error"]["code"] == "refresh_token_reused"
    status, body = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]}, token=""
    )
    assert status == 401, "the whole family is revoked, the newest token included"
    for token in (first_access, rotated["access_token"]):
        status, body = await user.call("GET", "/api/v1/auth/me", token=token)
        assert status == 401 and body["error"]["code"] == "session_revoked"
    anomalies = await _audit(stack, "auth.anomaly", f"user:{user.user_id}")
    assert any(r["after"]["reason"] == "refresh_token_reuse" for r in anomalies)
    status, body = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": "rt_nope.forged"}, token=""
    )
    assert status == 401 and body["error"]["code"] == "invalid_refresh_token"


async def test_expired_forged_and_foreign_tokens_are_refused(stack: Stack, http) -> None:
    assert stack.pg is not None
    user = await make_user(stack, http, Realm.PLATFORM, None, ["operations"])
    keys = await identity.signing_keys(stack.pg, stack.box, 3600)
    expired = issue_access_token(
        keys[0],
        user_id=user.user_id,
        realm="platform",
        org_id=None,
        mfa=True,
        session="ses_x",
        now=int(time.time()) - 3600,
        ttl_s=600,
        issuer="juhe",
    )
    status, body = await user.call("GET", "/api/v1/auth/me", token=expired)
    assert status == 401 and body["error"]["code"] == "token_expired"
    head, payload, signature = user.access.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    status, body = await user.call("GET", "/api/v1/auth/me", token=forged)
    assert status == 401 and body["error"]["code"] == "invalid_token"
    status, body = await user.call("GET", "/api/v1/auth/me", token="not-a-jwt")
    assert status == 401


async def test_rotated_signing_key_signs_new_tokens_and_old_ones_stay_valid(
    stack: Stack, http
) -> None:
    assert stack.pg is not None
    user = await make_user(stack, http, Realm.PLATFORM, None, ["operations"])
    old_access = user.access
    kid = await rotate_signing_key(stack.pg, stack.box)
    await asyncio.sleep(1.2)  # the tests' key cache is 1 s (60 s by default)
    status, session = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": user.refresh}, token=""
    )
    assert status == 200
    assert jwt.get_unverified_header(session["access_token"])["kid"] == kid
    for token in (old_access, session["access_token"]):
        status, _ = await user.call("GET", "/api/v1/auth/me", token=token)
        assert status == 200, "tokens of the retired key stay valid until they expire"
    assert await _audit(stack, "key.rotate", f"signing_key:{kid}")


async def test_logout_ends_the_session(stack: Stack, http) -> None:
    user = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    refresh = user.refresh
    status, _ = await user.call("POST", "/api/v1/auth/logout")
    assert status == 204
    status, body = await user.call("GET", "/api/v1/auth/me")
    assert status == 401 and body["error"]["code"] == "session_revoked"
    status, _ = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": refresh}, token=""
    )
    assert status == 401
    status, body = await user.call("POST", "/api/v1/auth/logout", token="")
    assert status == 401 and body["error"]["type"] == "authentication_error"


def _from(ip: str) -> aiohttp.ClientSession:
    """A client at another loopback address (all of 127.0.0.0/8 reaches the node)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0)))


async def _login_raw(
    stack: Stack, http: aiohttp.ClientSession, email: str, password: str
) -> tuple[int, dict, Any]:
    async with http.post(
        stack.url + "/api/v1/auth/login", json={"email": email, "password": password}
    ) as response:
        return response.status, await response.json(), response.headers


async def test_a_stranger_cannot_lock_a_user_out(stack: Stack, http) -> None:
    """Failures slow down the client that makes them; the account-wide count holds back only
    clients the account has never signed in from (issue 12: five wrong passwords from anywhere
    locked any account, the superuser's included)."""
    user = await make_user(stack, http, Realm.MERCHANT, "mch_lockout", [])  # from 127.0.0.1
    for ip in ("127.0.0.2", "127.0.0.3"):
        async with _from(ip) as elsewhere:
            for _ in range(5):
                status, body, _ = await _login_raw(stack, elsewhere, user.email, "Wrong-pass-42")
                assert status == 401 and body["error"]["code"] == "invalid_credentials", body
            status, body, headers = await _login_raw(stack, elsewhere, user.email, PASSWORD)
            assert status == 429 and body["error"]["type"] == "rate_limit_error", body
            assert 1 <= int(headers["Retry-After"]) <= 5, "5 s after the latest failure"
    # Ten failures: over the account's budget, so a client new to it waits, right password too…
    for ip in ("127.0.0.4", "127.0.0.5"):
        async with _from(ip) as newcomer:
            status, body, headers = await _login_raw(stack, newcomer, user.email, PASSWORD)
            assert status == 429 and int(headers["Retry-After"]) >= 1, (ip, body)
    # …but the user's usual client gets straight in, and a wrong guess from it is one failure.
    status, body = await user.login(password="Wrong-pass-42")
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    assert user.totp_secret is not None
    status, session = await user.login(totp=totp_code(user.totp_secret, 1))
    assert status == 200, session
    anomalies = await _audit(stack, "auth.anomaly", f"user:{user.user_id}")
    assert {r["after"]["reason"] for r in anomalies} == {"failure_burst"}
    failed = await _audit(stack, "auth.login_failed", f"user:{user.user_id}")
    assert [r["after"] for r in failed] == [{"why": "password"}] * 11, "429s are not failures"
    async with http.get(stack.url + "/metrics") as response:
        assert 'juhe_auth_logins_total{outcome="rate_limited"}' in await response.text()


async def test_sign_in_failures_look_alike_until_the_password_is_proven(stack: Stack, http) -> None:
    """Unknown e-mail, wrong password, disabled account: one answer, and about one time (the
    password hash is checked for an unknown e-mail too); MFA is named only after the right
    password."""
    assert stack.pg is not None
    user = await make_user(stack, http, Realm.MERCHANT, "mch_alike", [], sign_in=False)
    gone = await make_user(stack, http, Realm.MERCHANT, "mch_alike", [], sign_in=False)
    await identity.set_status(stack.pg, gone.user_id, "disabled")
    guarded = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])  # has MFA
    nobody = f"nobody-{time.time_ns()}@example.com"
    answers, took = [], {}
    for email, password, tries in (
        (nobody, PASSWORD, 3),
        (user.email, "Wrong-pass-42", 3),
        (gone.email, PASSWORD, 2),  # five failures per client and account before a wait
        (gone.email, "Wrong-pass-42", 2),
        (guarded.email, "Wrong-pass-42", 1),
    ):
        timings = []
        for _ in range(tries):
            started = time.perf_counter()
            status, body, _ = await _login_raw(stack, http, email, password)
            timings.append(time.perf_counter() - started)
            answers.append((status, body))
        took[email, password] = sorted(timings)[len(timings) // 2]
    assert {orjson.dumps(a) for a in answers} == {
        orjson.dumps(
            (
                401,
                {
                    "error": {
                        "type": "authentication_error",
                        "code": "invalid_credentials",
                        "message": "the e-mail address or password is wrong",
                        "param": None,
                    }
                },
            )
        )
    }
    assert took[nobody, PASSWORD] > 0.5 * took[user.email, "Wrong-pass-42"], took
    status, body = await guarded.login()
    assert status == 401 and body["error"]["code"] == "mfa_required", "the password was right"


async def test_unknown_account_and_bad_input(stack: Stack, http) -> None:
    ghost = Portal(stack, http, "usr_ghost", f"ghost-{time.time_ns()}@example.com")
    status, body = await ghost.login()
    assert status == 401 and body["error"]["code"] == "invalid_credentials"
    for payload in ({"email": "x"}, {"email": "not-an-email", "password": "x"}, [1, 2]):
        status, body = await ghost.call("POST", "/api/v1/auth/login", payload, token="")
        assert status == 400 and body["error"]["type"] == "invalid_request_error", payload


async def test_failures_per_client_and_account_are_throttled(stack: Stack, http) -> None:
    ghost = Portal(stack, http, "usr_ghost", f"flood-{time.time_ns()}@example.com")
    statuses = [(await ghost.login())[0] for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2, "an unknown e-mail is throttled like any other"
    status, body, headers = await _login_raw(stack, http, ghost.email, PASSWORD)
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "too_many_attempts" and 1 <= int(headers["Retry-After"]) <= 5
    other = Portal(stack, http, "usr_ghost", f"other-{time.time_ns()}@example.com")
    status, _ = await other.login()
    assert status == 401, "the same client, another account: its own budget"


async def test_rate_limiter_counts_per_key_and_window(stack: Stack) -> None:
    assert stack.redis is not None
    limiter = RateLimiter(stack.redis, stack.settings.redis.prefix + f":rl{time.time_ns()}", 60)
    assert [await limiter.hit("ip", "10.0.0.1", 3) for _ in range(4)] == [True] * 3 + [False]
    assert await limiter.hit("ip", "10.0.0.2", 3), "another IP has its own budget"


async def test_concurrent_sign_in_attempts_each_see_the_ones_before(stack: Stack) -> None:
    """Logging and reading are one transaction, so a burst of parallel guesses cannot all pass
    the check before any is counted."""
    assert stack.redis is not None
    limiter = RateLimiter(stack.redis, stack.settings.redis.prefix + f":rl{time.time_ns()}", 60)
    logged = await asyncio.gather(*(limiter.attempt(["a", "b"], 60) for _ in range(10)))
    assert sorted(before[0].count for _, before in logged) == list(range(10))
    assert all(a.count == b.count for _, (a, b) in logged)
    newest = max(logged, key=lambda attempt: attempt[1][0].count)
    await limiter.withdraw(["a", "b"], newest[0])
    _, (a, b) = await limiter.attempt(["a", "b"], 60)
    assert a.count == 9 and a.latest > 0, "a withdrawn attempt is no failure"
    await limiter.forget("b")
    _, (_, b) = await limiter.attempt(["a", "b"], 60)
    assert b == Failures(0, 0.0)


async def test_new_country_is_flagged(stack: Stack, http) -> None:
    user = await make_user(stack, http, Realm.MERCHANT, "mch_travel", [], sign_in=False)
    status, _ = await user.login(**{"X-Test-Country": "TW"})
    assert status == 200
    status, _ = await user.login(**{"X-Test-Country": "TW"})
    assert status == 200
    assert not await _audit(stack, "auth.anomaly", f"user:{user.user_id}")
    status, _ = await user.login(**{"X-Test-Country": "RU"})
    assert status == 200
    flagged = await _audit(stack, "auth.anomaly", f"user:{user.user_id}")
    assert [r["after"]["reason"] for r in flagged] == ["new_country"]
    async with http.get(stack.url + "/metrics") as response:
        assert 'juhe_auth_anomalies_total{reason="new_country"}' in await response.text()


async def test_admin_manages_users_roles_and_settings(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    shop = await new_merchant()
    email = f"owner-{time.time_ns()}@example.com"
    payload = {"email": email, "password": "short", "realm": "merchant", "org_id": shop.merchant_id}
    status, body = await admin.call("POST", "/api/v1/admin/users", {**payload, "roles": []})
    assert status == 400 and body["error"]["code"] == "weak_password"
    status, body = await admin.call(
        "POST", "/api/v1/admin/users", {**payload, "password": PASSWORD, "roles": ["finance"]}
    )
    assert status == 400 and body["error"]["code"] == "role_realm_mismatch"
    status, owner_view = await admin.call(
        "POST",
        "/api/v1/admin/users",
        {**payload, "password": PASSWORD, "roles": ["merchant_owner"]},
    )
    assert status == 201 and owner_view["roles"] == ["merchant_owner"], owner_view
    status, body = await admin.call(
        "POST", "/api/v1/admin/users", {**payload, "password": PASSWORD}
    )
    assert status == 409 and body["error"]["code"] == "email_taken"

    owner = Portal(stack, http, owner_view["id"], email)
    await owner.sign_in()
    # The owner manages the shop's users, but grants nothing beyond their own permissions.
    status, staff = await owner.call(
        "POST",
        "/api/v1/admin/users",
        {
            "email": f"staff-{time.time_ns()}@example.com",
            "password": PASSWORD,
            "realm": "merchant",
            "org_id": shop.merchant_id,
            "roles": ["merchant_staff"],
        },
    )
    assert status == 201
    status, listed = await owner.call("GET", "/api/v1/admin/users")
    assert status == 200 and {u["id"] for u in listed["data"]} == {owner.user_id, staff["id"]}
    status, body = await owner.call(
        "POST",
        "/api/v1/admin/users",
        {"email": f"x-{time.time_ns()}@example.com", "password": PASSWORD, "realm": "platform"},
    )
    assert status == 403 and body["error"]["code"] == "not_owner"

    status, body = await admin.call("POST", f"/api/v1/admin/users/{staff['id']}/disable")
    assert status == 200 and body["status"] == "disabled"
    status, body = await admin.call("POST", f"/api/v1/admin/users/{admin.user_id}/disable")
    assert status == 409 and body["error"]["code"] == "cannot_change_self"
    status, body = await admin.call(
        "PUT", f"/api/v1/admin/users/{staff['id']}/roles", {"roles": ["merchant_owner"]}
    )
    assert status == 200 and body["roles"] == ["merchant_owner"]
    changes = await _audit(stack, "user.roles", f"user:{staff['id']}")
    assert changes[0]["before"] == {"roles": ["merchant_staff"]}
    assert changes[0]["after"] == {"roles": ["merchant_owner"]}

    # Roles: built-ins are read-only; custom roles are validated against their realm.
    status, roles = await admin.call("GET", "/api/v1/admin/roles")
    assert status == 200 and {"platform_admin", "merchant_staff"} <= {
        r["id"] for r in roles["data"]
    }
    role = {"name": "Refunds desk", "realm": "merchant", "permissions": ["refunds:create"]}
    status, body = await admin.call("PUT", "/api/v1/admin/roles/platform_admin", role)
    assert status == 409 and body["error"]["code"] == "builtin_role"
    status, body = await admin.call(
        "PUT", "/api/v1/admin/roles/refunds_desk", {**role, "permissions": ["settings:write"]}
    )
    assert status == 400 and body["error"]["code"] == "invalid_permissions"
    status, body = await admin.call("PUT", "/api/v1/admin/roles/refunds_desk", role)
    assert status in (200, 201) and body["permissions"] == ["refunds:create"]

    # Settings: validated, versioned, and in force at once.
    status, current = await admin.call("GET", "/api/v1/admin/settings")
    assert status == 200
    change = {"version": current["version"], "settings": {"password_min_length": 3}}
    status, body = await admin.call("PUT", "/api/v1/admin/settings", change)
    assert status == 400 and body["error"]["param"] == "settings.password_min_length"
    change["settings"] = {"password_min_length": 30}
    status, updated = await admin.call("PUT", "/api/v1/admin/settings", change)
    assert status == 200 and updated["version"] == current["version"] + 1
    status, body = await admin.call("PUT", "/api/v1/admin/settings", change)
    assert status == 409 and body["error"]["code"] == "version_conflict"
    await asyncio.sleep(5.2)  # other gateway processes pick the change up within 5 s
    status, body = await admin.call(
        "POST",
        "/api/v1/admin/users",
        {**payload, "email": f"y-{time.time_ns()}@example.com", "password": PASSWORD},
    )
    assert status == 400 and body["error"]["code"] == "weak_password"
    restore = {"version": updated["version"], "settings": {"password_min_length": 12}}
    status, _ = await admin.call("PUT", "/api/v1/admin/settings", restore)
    assert status == 200
    record = (await _audit(stack, "settings.update"))[1]
    assert record["before"]["password_min_length"] == current["settings"]["password_min_length"]
    assert record["after"]["password_min_length"] == 30


async def test_common_passwords_are_refused_everywhere(stack: Stack, http) -> None:
    """`Password1234` met the length and mix rules (issue 12); a common password with digits
    and symbols added is refused wherever a password is set."""
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    email = f"common-{time.time_ns()}@example.com"
    status, body = await admin.call(
        "POST",
        "/api/v1/admin/users",
        {"email": email, "password": "Password1234", "realm": "platform", "roles": []},
    )
    assert status == 400 and body["error"]["code"] == "weak_password", body
    assert body["error"]["param"] == "password" and "common" in body["error"]["message"]
    status, body = await admin.call(
        "POST",
        "/api/v1/agents/register",
        {"name": "Weak", "email": email, "password": "Summer2024!!"},
        token="",
    )
    assert status == 400 and body["error"]["code"] == "weak_password", body
    with pytest.raises(PasswordRejected, match="common"):
        await create_superuser(stack.pg, email, "Qwerty123456!")
    assert (await identity.sign_in_subject(stack.pg, email, ""))[0] is None, "none was made"


async def test_disabled_user_is_cut_off_at_once(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    victim = await make_user(stack, http, Realm.MERCHANT, "mch_cutoff", ["merchant_staff"])
    status, _ = await victim.call("GET", "/api/v1/auth/me")
    assert status == 200
    status, _ = await admin.call("POST", f"/api/v1/admin/users/{victim.user_id}/disable")
    assert status == 200
    status, body = await victim.call("GET", "/api/v1/auth/me")
    assert status == 401
    status, body = await victim.login()
    assert status == 401 and body["error"]["code"] == "invalid_credentials", "no account oracle"
    status, _ = await admin.call("POST", f"/api/v1/admin/users/{victim.user_id}/enable")
    assert status == 200
    assert victim.totp_secret is not None
    status, _ = await victim.login(totp=totp_code(victim.totp_secret, 1))
    assert status == 200


async def test_portal_users_see_only_their_merchants_payments(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    shop, other = await new_merchant(), await new_merchant()
    _, mine = await shop.create_payment(amount="3.00", currency="USD", merchant_order_id="p-1")
    # .56: the simulator never pays it, so it can still be canceled below
    _, theirs = await other.create_payment(amount="4.56", currency="USD", merchant_order_id="p-2")
    staff = await make_user(stack, http, Realm.MERCHANT, shop.merchant_id, ["merchant_staff"])
    status, body = await staff.call("GET", f"/api/v1/payments/{mine['id']}")
    assert status == 200 and body["id"] == mine["id"]
    status, body = await staff.call("GET", f"/api/v1/payments/{theirs['id']}")
    assert status == 404, "another merchant's payment is invisible"
    status, body = await staff.call("GET", "/api/v1/payments")
    assert status == 200 and [p["id"] for p in body["data"]] == [mine["id"]]
    status, body = await staff.call("POST", f"/api/v1/payments/{mine['id']}/cancel")
    assert status == 403 and body["error"]["code"] == "permission_denied"
    ops = await make_user(stack, http, Realm.PLATFORM, None, ["operations"])
    status, body = await ops.call("GET", f"/api/v1/payments?merchant_id={other.merchant_id}")
    assert status == 200 and [p["id"] for p in body["data"]] == [theirs["id"]]
    status, body = await ops.call("GET", "/api/v1/payments")
    assert status == 400 and body["error"]["param"] == "merchant_id"
    status, body = await ops.call("POST", f"/api/v1/payments/{theirs['id']}/cancel")
    assert status == 200 and body["status"] == "canceled"
    record = (await _audit(stack, "payment.cancel", theirs["id"]))[0]
    assert record["actor"] == f"user:{ops.user_id}" and record["after"] == {"status": "canceled"}


async def test_api_key_limited_to_some_permissions(
    stack: Stack, http: aiohttp.ClientSession, new_merchant: MerchantFactory
) -> None:
    shop = await new_merchant()
    owner = await make_user(stack, http, Realm.MERCHANT, shop.merchant_id, ["merchant_owner"])
    status, body = await owner.call(
        "POST",
        f"/api/v1/admin/merchants/{shop.merchant_id}/keys",
        {"permissions": ["settings:write"]},
    )
    assert status == 400 and body["error"]["code"] == "invalid_permissions"
    status, key = await owner.call(
        "POST",
        f"/api/v1/admin/merchants/{shop.merchant_id}/keys",
        {"permissions": ["payments:read"]},
    )
    assert status == 201 and key["secret"].startswith("sk_")
    reader = MerchantClient(stack.url, key["key_id"], key["secret"], http)
    status, body = await reader.create_payment(
        amount="1.00", currency="USD", merchant_order_id="k1"
    )
    assert status == 403 and body["error"]["code"] == "permission_denied"
    _, created = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="k2")
    status, body = await reader.get_payment(created["id"])
    assert status == 200
    status, body = await owner.call("POST", "/api/v1/admin/merchants/mch_elsewhere/keys")
    assert status == 403 and body["error"]["code"] == "not_owner"
    record = (await _audit(stack, "key.create", f"api_key:{key['key_id']}"))[0]
    assert record["after"] == {"merchant_id": shop.merchant_id, "permissions": ["payments:read"]}


async def test_refunds_are_audited(stack: Stack, merchant) -> None:
    _, created = await merchant.create_payment(amount="5.00", currency="USD", merchant_order_id="r")
    await wait_status(merchant, created["id"], {"succeeded"})
    status, refund = await merchant.request(
        "POST", "/api/v1/refunds", {"payment_id": created["id"], "amount": "1.00"}
    )
    assert status == 201
    record = (await _audit(stack, "refund.create", refund["id"]))[0]
    assert record["actor"] == f"api_key:{merchant.key_id}"
    assert record["after"]["payment_id"] == created["id"]


async def test_audit_query_filters_and_pages(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    status, page = await admin.call("GET", "/api/v1/admin/audit?action=auth&limit=3")
    assert status == 200 and len(page["data"]) == 3 and page["has_more"]
    assert all(r["action"].startswith("auth.") for r in page["data"])
    last = page["data"][-1]["seq"]
    status, following = await admin.call(
        "GET", f"/api/v1/admin/audit?action=auth&limit=3&starting_after={last}"
    )
    assert status == 200 and all(r["seq"] < last for r in following["data"])
    status, mine = await admin.call("GET", f"/api/v1/admin/audit?actor=user:{admin.user_id}")
    assert status == 200 and {r["actor"] for r in mine["data"]} == {f"user:{admin.user_id}"}
    status, body = await admin.call("GET", "/api/v1/admin/audit?since=abc")
    assert status == 400 and body["error"]["param"] == "since"
    status, verdict = await admin.call("GET", "/api/v1/admin/audit/verify")
    assert status == 200 and verdict == {
        "object": "audit_verification",
        "intact": True,
        "broken_at": None,
    }


async def test_no_secret_reaches_the_logs(stack: Stack, http) -> None:
    user = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    await user.login(password="Wrong-Password-999")
    status, _ = await user.call("GET", "/api/v1/auth/me")
    assert status == 200
    await asyncio.sleep(0.3)
    logged = stack.log_path.read_text()
    for secret in (PASSWORD, "Wrong-Password-999", user.access, user.refresh, user.totp_secret):
        assert secret and secret not in logged


async def test_merchant_and_agent_users_enrol_mfa_on_first_sign_in(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    """Seed §7.1: MFA for every realm (issue 12: merchant and agent users could work without
    it). Signed in without it, a user may only enrol; no permission applies until then."""
    assert stack.pg is not None
    shop = await new_merchant()
    agent_id = f"agt_mfa{time.time_ns()}"
    async with stack.pg.acquire() as conn, conn.transaction():
        await agents.create_agent(
            conn,
            agent_id=agent_id,
            name=agent_id,
            email=f"{agent_id}@example.com",
            parent_id=None,
            status="active",
            grants=[],
        )
    for realm, org, role, path in (
        (Realm.MERCHANT, shop.merchant_id, "merchant_staff", "/api/v1/payments"),
        (Realm.AGENT, agent_id, "agent_staff", f"/api/v1/agents/{agent_id}"),
    ):
        user = await make_user(stack, http, realm, org, [role], sign_in=False)
        status, session = await user.login()
        assert status == 200 and session["mfa"] is False, session
        assert session["mfa_enrolment_required"] is True, realm
        status, body = await user.call("GET", path)
        assert status == 403 and body["error"]["code"] == "mfa_required", (realm, body)
        status, me = await user.call("GET", "/api/v1/auth/me")
        assert status == 200 and me["mfa"] is False and me["mfa_required"] is True
        await user.enrol_mfa()
        status, body = await user.call("GET", path)
        assert status == 200, (realm, body)


async def test_the_platform_may_relax_mfa_and_a_merchant_may_still_demand_it(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    strict, relaxed = await new_merchant(), await new_merchant()
    await stack.pg.execute(
        "UPDATE merchants SET mfa_required = true WHERE id = $1", strict.merchant_id
    )
    async with platform_setting(admin, "mfa_required_merchant", False) as before:
        assert before is True
        staff = await make_user(
            stack, http, Realm.MERCHANT, strict.merchant_id, ["merchant_staff"], sign_in=False
        )
        status, session = await staff.login()
        assert status == 200 and session["mfa_enrolment_required"] is True
        status, body = await staff.call("GET", "/api/v1/payments")
        assert status == 403 and body["error"]["code"] == "mfa_required"
        await staff.enrol_mfa()
        status, _ = await staff.call("GET", "/api/v1/payments")
        assert status == 200
        other = await make_user(
            stack, http, Realm.MERCHANT, relaxed.merchant_id, ["merchant_staff"], sign_in=False
        )
        status, session = await other.login()
        assert status == 200 and session["mfa_enrolment_required"] is False
        status, _ = await other.call("GET", "/api/v1/payments")
        assert status == 200, "relaxed: no MFA needed"
        agent_user = await make_user(stack, http, Realm.AGENT, "agt_none", [], sign_in=False)
        status, session = await agent_user.login()
        assert session["mfa_enrolment_required"] is True, "agents' users still need it"
    assert await setting_changes(admin, "mfa_required_merchant") == [
        (True, False),
        (False, True),
    ], "audited"


async def test_a_new_country_device_or_failure_burst_asks_for_mfa_where_it_is_optional(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    """Seed §7.3: the flagged sign-in's session can only enrol MFA, even across a refresh."""
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    shop = await new_merchant()
    async with platform_setting(admin, "mfa_required_merchant", False):
        staff = await make_user(
            stack, http, Realm.MERCHANT, shop.merchant_id, ["merchant_staff"], sign_in=False
        )

        async def sign_in(device: str | None = None, **headers: str) -> bool:
            """Whether the session was asked to pass MFA (and is refused until it does)."""
            payload = {"email": staff.email, "password": PASSWORD}
            if device is not None:
                payload["device"] = device
            status, session = await staff.call(
                "POST", "/api/v1/auth/login", payload, token="", headers=headers
            )
            assert status == 200, session
            staff.access, staff.refresh = session["access_token"], session["refresh_token"]
            status, body = await staff.call("GET", "/api/v1/payments")
            demanded = session["mfa_enrolment_required"]
            assert (status == 403) is demanded, body
            return demanded

        assert not await sign_in("device-one", **{"X-Test-Country": "TW"}), "where it lives"
        assert not await sign_in("device-one", **{"X-Test-Country": "TW"})
        assert not await sign_in(None, **{"X-Test-Country": "TW"}), "no device: nothing new"
        assert await sign_in("device-one", **{"X-Test-Country": "JP"}), "a new country"
        status, renewed = await staff.call(
            "POST", "/api/v1/auth/refresh", {"refresh_token": staff.refresh}, token=""
        )
        assert status == 200 and renewed["mfa_enrolment_required"] is True, renewed
        staff.access = renewed["access_token"]
        status, body = await staff.call("GET", "/api/v1/payments")
        assert status == 403 and body["error"]["code"] == "mfa_required", "a refresh keeps it"
        assert await sign_in("device-two", **{"X-Test-Country": "TW"}), "a new device"
        for _ in range(stack.settings.auth.failure_burst):
            status, _ = await staff.login(password="not-the-password-1")
            assert status == 401
        assert await sign_in("device-one", **{"X-Test-Country": "TW"}), "after a burst"
        assert not await sign_in("device-one", **{"X-Test-Country": "TW"}), "then as before"
        await staff.enrol_mfa()
        status, _ = await staff.call("GET", "/api/v1/payments")
        assert status == 200, "MFA passed"
    flagged = await _audit(stack, "auth.anomaly", f"user:{staff.user_id}")
    reasons = sorted(r["after"]["reason"] for r in flagged)
    assert reasons == ["failure_burst", "new_country", "new_device"], reasons
    logins = await _audit(stack, "auth.login", f"user:{staff.user_id}")
    assert sum(r["after"].get("step_up") is True for r in logins) == 3


async def _role(admin: Portal, permissions: list[str]) -> str:
    role_id = f"desk_{time.time_ns()}"
    body = {"name": role_id, "realm": "platform", "permissions": permissions}
    status, role = await admin.call("PUT", f"/api/v1/admin/roles/{role_id}", body)
    assert status == 201, role
    return role_id


async def test_nobody_acts_on_a_user_who_holds_more_than_they_do(stack: Stack, http) -> None:
    """Disabling, enabling and re-roling take every permission the user holds, as granting
    does (issue 12: a users:manage desk disabled a platform admin and stripped its roles)."""
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    other_admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    desk_role = await _role(admin, ["users:read", "users:manage"])
    desk = await make_user(stack, http, Realm.PLATFORM, None, [desk_role])
    peer = await make_user(stack, http, Realm.PLATFORM, None, [desk_role], sign_in=False)
    ops = await make_user(stack, http, Realm.PLATFORM, None, ["operations"], sign_in=False)
    status, _ = await admin.call("POST", f"/api/v1/admin/users/{other_admin.user_id}/disable")
    assert status == 200, "an admin may act on another admin"
    for method, path, change in (
        ("POST", f"/api/v1/admin/users/{admin.user_id}/disable", None),
        ("PUT", f"/api/v1/admin/users/{admin.user_id}/roles", {"roles": []}),
        ("PUT", f"/api/v1/admin/users/{admin.user_id}/roles", {"roles": [desk_role]}),
        ("POST", f"/api/v1/admin/users/{other_admin.user_id}/enable", None),
        ("POST", f"/api/v1/admin/users/{ops.user_id}/disable", None),
        ("PUT", f"/api/v1/admin/users/{ops.user_id}/roles", {"roles": [desk_role]}),
        ("PUT", f"/api/v1/admin/users/{peer.user_id}/roles", {"roles": ["operations"]}),
    ):
        status, body = await desk.call(method, path, change)
        assert status == 403 and body["error"]["code"] == "privilege_escalation", (path, body)
        assert body["error"]["type"] == "permission_error"
    assert stack.pg is not None
    for user, status_, roles in (
        (admin, "active", ["platform_admin"]),
        (other_admin, "disabled", ["platform_admin"]),
        (ops, "active", ["operations"]),
    ):
        now = await identity.user_by_id(stack.pg, user.user_id)
        assert now is not None and (now.status, list(now.roles)) == (status_, roles)
    denials = await audit.query(stack.pg, action="access.denied", actor=f"user:{desk.user_id}")
    assert {d["after"]["code"] for d in denials} == {"privilege_escalation"}
    # What the desk holds itself, it manages.
    status, body = await desk.call("POST", f"/api/v1/admin/users/{peer.user_id}/disable")
    assert status == 200 and body["status"] == "disabled"
    status, body = await desk.call(
        "PUT", f"/api/v1/admin/users/{peer.user_id}/roles", {"roles": []}
    )
    assert status == 200 and body["roles"] == []
    # A custom role is changed only within what the changer holds (it reaches every holder).
    status, body = await desk.call(
        "PUT",
        f"/api/v1/admin/roles/{desk_role}",
        {"name": "desk", "realm": "platform", "permissions": ["users:read"]},
    )
    assert status == 403 and body["error"]["code"] == "permission_denied", "needs roles:manage"
    roles_role = await _role(admin, ["roles:manage"])
    status, body = await admin.call(
        "PUT", f"/api/v1/admin/users/{desk.user_id}/roles", {"roles": [desk_role, roles_role]}
    )
    assert status == 200
    status, body = await desk.call(
        "PUT",
        f"/api/v1/admin/roles/{desk_role}",
        {"name": "desk", "realm": "platform", "permissions": ["users:read", "settings:write"]},
    )
    assert status == 403 and body["error"]["code"] == "privilege_escalation"


async def test_the_last_platform_admin_can_be_neither_disabled_nor_demoted(
    stack: Stack, http
) -> None:
    assert stack.pg is not None
    last = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    every = sorted(PERMISSIONS_OF_PLATFORM)
    superuser = await make_user(stack, http, Realm.PLATFORM, None, [await _role(last, every)])
    # Make `last` the only active platform admin for the length of this test.
    others = await stack.pg.fetch(
        """UPDATE users SET status = 'disabled'
           WHERE realm = 'platform' AND status = 'active' AND id <> $1
             AND id IN (SELECT user_id FROM user_roles WHERE role_id = 'platform_admin')
           RETURNING id""",
        last.user_id,
    )
    try:
        for who, method, path, change in (
            (superuser, "POST", f"/api/v1/admin/users/{last.user_id}/disable", None),
            (superuser, "PUT", f"/api/v1/admin/users/{last.user_id}/roles", {"roles": []}),
            (last, "PUT", f"/api/v1/admin/users/{last.user_id}/roles", {"roles": ["finance"]}),
        ):
            status, body = await who.call(method, path, change)
            assert status == 409 and body["error"]["code"] == "last_platform_admin", body
            assert body["error"]["type"] == "invalid_request_error"
        kept = await identity.user_by_id(stack.pg, last.user_id)
        assert kept is not None and kept.status == "active" and "platform_admin" in kept.roles
        status, body = await last.call(
            "PUT",
            f"/api/v1/admin/users/{last.user_id}/roles",
            {"roles": ["platform_admin", "finance"]},
        )
        assert status == 200, "adding roles to the last admin is fine"
        successor = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
        status, body = await superuser.call("POST", f"/api/v1/admin/users/{last.user_id}/disable")
        assert status == 200, "with another admin active, the first may go"
        status, body = await superuser.call(
            "POST", f"/api/v1/admin/users/{successor.user_id}/disable"
        )
        assert status == 409 and body["error"]["code"] == "last_platform_admin"
    finally:
        await stack.pg.execute(
            "UPDATE users SET status = 'active' WHERE id = ANY($1::text[])",
            [last.user_id, *(r["id"] for r in others)],
        )
