"""Portal sign-in: login, refresh, logout, MFA enrolment, and who am I.

A sign-in starts a session (a refresh-token family). Its access token says whether MFA was
satisfied; a user whose realm demands MFA but who has not enrolled gets a session that can only
enrol (every permission check answers `mfa_required` until then).

Until the password is proven, every failure answers alike (`invalid_credentials`, after one
argon2 verify, whether the account exists, is disabled or the password is wrong), so the answers
tell nobody which accounts exist; failures slow the client down (domain.signin) instead of
locking the account.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from domain.credentials import (
    DUMMY_HASH,
    new_recovery_codes,
    new_totp_secret,
    password_matches,
    provisioning_uri,
    recovery_digest,
    totp_step,
)
from domain.ids import new_id
from domain.policy import PlatformSettings
from domain.signin import (
    Budgets,
    Scopes,
    device_digest,
    needs_step_up,
    retry_after,
    scopes,
)
from domain.tokens import issue_access_token, new_refresh_token, split_refresh_token
from gateway.access import actor, bearer, client_ip, session_user, unauthorized, user_principal
from gateway.errors import ApiError, invalid
from gateway.identity_schemas import (
    Login,
    Logout,
    Me,
    MfaCode,
    MfaEnrolment,
    Refresh,
    Session,
    UserView,
)
from gateway.state import REQUEST_ID, Edge, decode, edge, json_answer
from infra import audit, identity, metrics
from infra.identity import User
from infra.sealing import TOTP, TOTP_PENDING

log = logging.getLogger("juhe.auth")


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        object="user",
        email=user.email,
        realm=user.realm.value,  # type: ignore[arg-type]
        org_id=user.org_id,
        status=user.status,  # type: ignore[arg-type]
        roles=list(user.roles),
        mfa_enabled=user.mfa_enabled,
    )


async def start_session(
    e: Edge, user: User, mfa: bool, family: str | None = None, step_up: bool = False
) -> Session:
    """Tokens for a new session, or the next pair of an existing one (`family`). `step_up`:
    the session can do nothing until its user passes MFA, whatever the platform's policy."""
    auth = e.settings.auth
    family = family or new_id("ses")
    token_id, refresh_token, digest = new_refresh_token()
    await identity.insert_refresh(
        e.pg,
        token_id=token_id,
        family_id=family,
        user_id=user.id,
        digest=digest,
        mfa=mfa,
        expires_at=datetime.now(UTC) + timedelta(seconds=auth.refresh_ttl_s),
        step_up=step_up,
    )
    access = issue_access_token(
        await e.keyring.signing(),
        user_id=user.id,
        realm=user.realm.value,
        org_id=user.org_id,
        mfa=mfa,
        session=family,
        now=int(time.time()),
        ttl_s=auth.access_ttl_s,
        issuer=auth.issuer,
        step_up=step_up,
    )
    policy = await e.policy.get()
    return Session(
        access_token=access,
        token_type="Bearer",
        expires_in=auth.access_ttl_s,
        refresh_token=refresh_token,
        mfa=mfa,
        mfa_enrolment_required=not user.mfa_enabled
        and (step_up or policy.mfa_required(user.realm.value, user.org_requires_mfa)),
    )


def _anonymous(request: web.Request) -> audit.Actor:
    return audit.Actor("anonymous", "none", client_ip(request), request.get(REQUEST_ID))


def _user_actor(request: web.Request, user: User) -> audit.Actor:
    return audit.Actor(
        f"user:{user.id}", user.realm.value, client_ip(request), request.get(REQUEST_ID)
    )


async def _flag(request: web.Request, user: User, reason: str, detail: dict[str, str]) -> None:
    """An anomalous sign-in: recorded in the audit log, logged, counted, and sent to ops."""
    metrics.auth_anomalies.labels(reason).inc()
    log.warning("anomalous sign-in", extra={"user_id": user.id, "reason": reason})
    await edge(request).alerts.send("auth.anomaly", user_id=user.id, reason=reason)
    await audit.append(
        edge(request).pg,
        _user_actor(request, user),
        "auth.anomaly",
        f"user:{user.id}",
        after={"reason": reason, **detail},
    )


def _invalid_credentials() -> ApiError:
    return unauthorized("invalid_credentials", "the e-mail address or password is wrong")


class Throttled(ApiError):
    """429 with the seconds to wait in `Retry-After`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            "rate_limit_error",
            "too_many_attempts",
            f"too many failed sign-ins; try again in {retry_after_s} s",
        )
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        response = super().response()
        response.headers["Retry-After"] = str(self.retry_after_s)
        return response


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A sign-in attempt logged under its scopes: a failure unless taken back."""

    e: Edge
    scopes: Scopes
    member: str

    async def not_failed(self) -> None:
        await self.e.limiter.withdraw(self.scopes.all(), self.member)

    async def succeeded(self) -> None:
        """This client proved the password: its own failures for the account are forgiven;
        the account's and the client's other counts stay."""
        await self.not_failed()
        await self.e.limiter.forget(self.scopes.client_account)


async def _admit(
    e: Edge, policy: PlatformSettings, ip: str, email: str, known_client: bool
) -> _Attempt:
    """Log the attempt, or refuse it with 429 while its client must wait."""
    auth = e.settings.auth
    budgets = Budgets(
        client_account=policy.lockout_threshold,
        account=auth.login_limit_per_account,
        client=auth.login_limit_per_ip,
        max_wait_s=policy.lockout_s,
    )
    names = scopes(ip, email)
    member, (client, pair, account) = await e.limiter.attempt(names.all(), policy.lockout_s)
    attempt = _Attempt(e, names, member)
    wait = retry_after(budgets, client, pair, account, known_client=known_client, now=time.time())
    if wait:
        await attempt.not_failed()
        metrics.auth_logins.labels("rate_limited").inc()
        raise Throttled(wait)
    return attempt


async def _fail(
    request: web.Request, policy: PlatformSettings, user: User | None, why: str
) -> ApiError:
    """Record a failure (the attempt stays logged as one) and answer it: the same answer for
    every failure before the password is proven."""
    e = edge(request)
    metrics.auth_logins.labels("failed").inc()
    if user is None:
        await audit.append(e.pg, _anonymous(request), "auth.login_failed", None, after={"why": why})
        return _invalid_credentials()
    failures = await identity.record_failure(e.pg, user.id)
    await audit.append(
        e.pg, _user_actor(request, user), "auth.login_failed", f"user:{user.id}", after={"why": why}
    )
    if failures == policy.lockout_threshold:
        await _flag(request, user, "failure_burst", {"failures": str(failures)})
    if why == "totp":
        return unauthorized("invalid_totp", "the one-time code is wrong or was used already")
    return _invalid_credentials()


async def _second_factor(e: Edge, user: User, code: str) -> bool:
    assert user.mfa_secret is not None
    secret = TOTP.open(e.box, user.id, user.mfa_secret)
    step = totp_step(secret, code, time.time(), user.mfa_last_step)
    if step is not None:
        return await identity.spend_totp_step(e.pg, user.id, step)
    return await identity.spend_recovery_code(e.pg, user.id, recovery_digest(code))


def _why_refused(user: User | None, password_ok: bool) -> str | None:
    if user is None:
        return "unknown"
    if not password_ok:
        return "password"
    return None if user.status == "active" else "disabled"


async def login(request: web.Request) -> web.Response:
    e = edge(request)
    req = decode(await request.read(), Login)
    auth = e.settings.auth
    ip = client_ip(request)
    policy = await e.policy.get()
    user, known_client = await identity.sign_in_subject(e.pg, req.email, ip)
    attempt = await _admit(e, policy, ip, req.email, known_client)
    # One argon2 verify whatever the account, so the time taken tells nothing either.
    password_ok = password_matches(user.password_hash if user else DUMMY_HASH, req.password)
    if why := _why_refused(user, password_ok):
        raise await _fail(request, policy, user, why)
    assert user is not None
    mfa = False
    if user.mfa_enabled:
        if not req.totp:
            await attempt.not_failed()  # the password was right: the client asks again
            raise ApiError(
                401, "authentication_error", "mfa_required", "a one-time code is required", "totp"
            )
        if not await _second_factor(e, user, req.totp):
            raise await _fail(request, policy, user, "totp")
        mfa = True
    await attempt.succeeded()
    burst = user.failed_logins
    await identity.record_success(e.pg, user.id)
    country = request.headers.get(auth.country_header, "") if auth.country_header else ""
    new_ip, new_country = await identity.note_login_place(e.pg, user.id, ip, country)
    flags: set[str] = set()
    if new_ip or new_country:
        place = "new_country" if new_country else "new_ip"
        flags.add(place)
        await _flag(request, user, place, {"ip": ip, "country": country})
    if req.device is not None and await identity.note_login_device(
        e.pg, user.id, device_digest(req.device)
    ):
        flags.add("new_device")
        await _flag(request, user, "new_device", {"ip": ip})
    if burst >= auth.failure_burst:
        flags.add("failure_burst")
        await _flag(request, user, "failure_burst", {"failures": str(burst)})
    step_up = needs_step_up(flags, mfa)
    session = await start_session(e, user, mfa, step_up=step_up)
    metrics.auth_logins.labels("ok").inc()
    await audit.append(
        e.pg,
        _user_actor(request, user),
        "auth.login",
        f"user:{user.id}",
        after={"mfa": mfa, "step_up": step_up},
    )
    return json_answer(session)


async def refresh(request: web.Request) -> web.Response:
    e = edge(request)
    req = decode(await request.read(), Refresh)
    parts = split_refresh_token(req.refresh_token)
    spent = await identity.spend_refresh(e.pg, *parts) if parts else None
    if spent is not None and spent.outcome == "reused":
        user = await identity.user_by_id(e.pg, spent.user_id or "")
        if user is not None:
            await _flag(request, user, "refresh_token_reuse", {"session": spent.family_id or ""})
        raise unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; the session has been revoked",
        )
    if spent is None or spent.outcome != "ok":
        raise unauthorized("invalid_refresh_token", "the refresh token is invalid or expired")
    user = await identity.user_by_id(e.pg, spent.user_id or "")
    if user is None or user.status != "active":
        raise unauthorized("account_disabled", "the account is disabled")
    return json_answer(
        await start_session(e, user, spent.mfa, spent.family_id, step_up=spent.step_up)
    )


async def logout(request: web.Request) -> web.Response:
    """Ends the session of the bearer token (and of a refresh token given in the body)."""
    e = edge(request)
    body = await request.read()
    req = decode(body, Logout) if body else Logout()
    token = bearer(request)
    if token is None:
        raise unauthorized("missing_credentials", "an access token is required")
    who = await user_principal(e, token, allow_mfa_pending=True)
    assert who.session is not None
    await identity.revoke_family(e.pg, who.session)
    if req.refresh_token and (parts := split_refresh_token(req.refresh_token)):
        row = await e.pg.fetchrow(
            "SELECT family_id FROM refresh_tokens WHERE id = $1 AND digest = $2 AND user_id = $3",
            parts[0],
            parts[1],
            who.id,
        )
        if row is not None:
            await identity.revoke_family(e.pg, row["family_id"])
    await audit.append(e.pg, actor(request, who), "auth.logout", f"user:{who.id}")
    return web.Response(status=204)


async def _signed_in(request: web.Request) -> tuple[Edge, User, bool]:
    """The bearer's user and whether the session passed MFA; enough to enrol."""
    e = edge(request)
    token = bearer(request)
    if token is None:
        raise unauthorized("missing_credentials", "an access token is required")
    who, user = await session_user(e, token, allow_mfa_pending=True)
    return e, user, who.mfa


async def me(request: web.Request) -> web.Response:
    e, user, mfa = await _signed_in(request)
    policy = await e.policy.get()
    return json_answer(
        Me(
            user=user_view(user),
            permissions=sorted(user.permissions),
            mfa=mfa,
            mfa_required=policy.mfa_required(user.realm.value, user.org_requires_mfa),
        )
    )


async def mfa_enroll(request: web.Request) -> web.Response:
    e, user, mfa = await _signed_in(request)
    if user.mfa_enabled and not mfa:
        raise ApiError(
            403, "permission_error", "mfa_required", "sign in with your current code to re-enrol"
        )
    secret = new_totp_secret()
    codes = new_recovery_codes(e.settings.auth.recovery_codes)
    await identity.start_mfa(e.pg, e.box, user.id, secret, [recovery_digest(c) for c in codes])
    await audit.append(e.pg, _user_actor(request, user), "auth.mfa_enroll", f"user:{user.id}")
    return json_answer(
        MfaEnrolment(
            secret=secret,
            provisioning_uri=provisioning_uri(secret, user.email, e.settings.auth.issuer),
            recovery_codes=codes,
        )
    )


async def mfa_verify(request: web.Request) -> web.Response:
    """Confirms enrolment with a first code; the answer is a new session that has passed MFA
    (the old one, which had not, is ended)."""
    e, user, _ = await _signed_in(request)
    req = decode(await request.read(), MfaCode)
    if user.mfa_pending is None:
        raise invalid("mfa_not_enrolled", "enrol first: POST /api/v1/auth/mfa/enroll", status=409)
    # A new secret's steps start fresh; the old secret's last step still bounds replays.
    pending = TOTP_PENDING.open(e.box, user.id, user.mfa_pending)
    step = totp_step(pending, req.code, time.time(), 0)
    if step is None or not await identity.confirm_mfa(e.pg, user.id, user.mfa_pending, step):
        raise invalid("invalid_totp", "the one-time code is wrong or was used already", "code")
    token = bearer(request)
    assert token is not None
    who, _ = await session_user(e, token, allow_mfa_pending=True)
    assert who.session is not None
    await identity.revoke_family(e.pg, who.session)
    await audit.append(e.pg, _user_actor(request, user), "auth.mfa_enabled", f"user:{user.id}")
    fresh = await identity.user_by_id(e.pg, user.id)
    assert fresh is not None
    return json_answer(await start_session(e, fresh, mfa=True))
