"""Portal users for tests: created straight in the database, signed in over HTTP."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pyotp

from domain.access import Realm
from domain.credentials import hash_password
from domain.ids import new_id
from infra import audit, identity
from tests.stack import Stack

PASSWORD = "Correct-Horse-42-battery"


def totp_code(secret: str, offset_steps: int = 0) -> str:
    """A code for the current time step, or one `offset_steps` later (a step already spent
    cannot be used again, so a second code within 30 s must be the next step's)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


@dataclass
class Portal:
    """A signed-in user's view of the API."""

    stack: Stack
    http: aiohttp.ClientSession
    user_id: str
    email: str
    access: str = ""
    refresh: str = ""
    totp_secret: str | None = None
    recovery_codes: tuple[str, ...] = ()

    async def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = {"Content-Type": "application/json", **(headers or {})}
        bearer = self.access if token is None else token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        body = b"" if payload is None else orjson.dumps(payload)
        async with self.http.request(
            method, self.stack.url + path, data=body, headers=sent
        ) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None

    async def login(self, password: str = PASSWORD, totp: str | None = None, **headers: str):
        payload = {"email": self.email, "password": password}
        if totp is not None:
            payload["totp"] = totp
        status, body = await self.call(
            "POST", "/api/v1/auth/login", payload, token="", headers=headers
        )
        if status == 200:
            self.access, self.refresh = body["access_token"], body["refresh_token"]
        return status, body

    async def sign_in(self) -> None:
        """A first sign-in: with the password, then MFA enrolment where it is required (every
        realm, unless the platform relaxed it)."""
        status, session = await self.login()
        assert status == 200, session
        if session["mfa_enrolment_required"]:
            await self.enrol_mfa()

    async def enrol_mfa(self) -> dict[str, Any]:
        status, enrolment = await self.call("POST", "/api/v1/auth/mfa/enroll")
        assert status == 200, enrolment
        self.totp_secret = enrolment["secret"]
        self.recovery_codes = tuple(enrolment["recovery_codes"])
        status, session = await self.call(
            "POST", "/api/v1/auth/mfa/verify", {"code": totp_code(self.totp_secret)}
        )
        assert status == 200, session
        assert session["mfa"] is True
        self.access, self.refresh = session["access_token"], session["refresh_token"]
        return enrolment


async def make_user(
    stack: Stack,
    http: aiohttp.ClientSession,
    realm: Realm,
    org_id: str | None,
    roles: list[str],
    *,
    sign_in: bool = True,
) -> Portal:
    """A user with these roles; signed in (with MFA enrolled where the realm demands it)."""
    assert stack.pg is not None
    await identity.sync_builtin_roles(stack.pg)
    user_id = new_id("usr")
    email = f"{user_id}@{secrets.token_hex(3)}.example.com"
    async with stack.pg.acquire() as conn, conn.transaction():
        assert await identity.insert_user(
            conn,
            user_id=user_id,
            email=email,
            realm=realm,
            org_id=org_id,
            password_hash=HASHED,
        )
        await identity.set_roles(conn, user_id, roles)
    portal = Portal(stack, http, user_id, email)
    if sign_in:
        await portal.sign_in()
    return portal


HASHED = hash_password(PASSWORD)  # one argon2 hash for every test user


# how long every gateway process takes to pick up a settings change
SETTINGS_REACH_S = 5.2


@asynccontextmanager
async def platform_setting(admin: Portal, name: str, value: Any) -> AsyncIterator[Any]:
    """Platform setting `name` at `value` for the block, in force in every process, then back
    as it was (both changes through the API, so both are audited); yields the value it had."""
    status, current = await admin.call("GET", "/api/v1/admin/settings")
    assert status == 200, current
    before = current["settings"][name]
    change = {"version": current["version"], "settings": {name: value}}
    status, updated = await admin.call("PUT", "/api/v1/admin/settings", change)
    assert status == 200, updated
    try:
        await asyncio.sleep(SETTINGS_REACH_S)
        yield before
    finally:
        restore = {"version": updated["version"], "settings": {name: before}}
        status, _ = await admin.call("PUT", "/api/v1/admin/settings", restore)
        assert status == 200
        await asyncio.sleep(SETTINGS_REACH_S)


async def setting_changes(admin: Portal, name: str) -> list[tuple[Any, Any]]:
    """(before, after) of `name` in the admin's audited settings changes, oldest first."""
    changes = await audit.query(
        admin.stack.pg, action="settings.update", actor=f"user:{admin.user_id}", limit=10
    )
    return [(c["before"][name], c["after"][name]) for c in reversed(changes)]
