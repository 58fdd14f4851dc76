"""Secrets sealed at rest (infra/sealing.py) against the running node: wherever one is written,
the stored value is sealed and holds no plaintext, and it still works where it is used."""

from __future__ import annotations

import asyncio
import secrets

import jwt
import msgspec
import pytest

from cli.admin import rotate_signing_key
from domain.access import Realm
from domain.messages import PaymentIntent
from domain.risk.lists import Kind
from gateway.client import MerchantClient
from infra import identity
from infra.keys import Keys
from infra.sealing import CUSTOMER_EMAIL, CUSTOMER_IP, SIGNING_KEY, TOTP, TOTP_PENDING
from tests.conftest import MerchantFactory, Receiver, assert_sealed, block, wait_status
from tests.portal import make_user, totp_code
from tests.stack import TEST_SETTINGS, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _stored_key(stack: Stack, key_id: str) -> str:
    assert stack.pg is not None
    return await stack.pg.fetchval("SELECT secret FROM api_keys WHERE key_id = $1", key_id)


async def test_merchant_keys_and_webhook_secrets_are_sealed_and_still_sign(
    stack: Stack, http, new_merchant: MerchantFactory, receiver: Receiver
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    assert_sealed(await _stored_key(stack, shop.key_id), shop.secret)
    webhook = await stack.pg.fetchval(
        "SELECT webhook_secret FROM merchants WHERE id = $1", shop.merchant_id
    )
    assert_sealed(webhook, receiver.secrets[shop.merchant_id].decode())

    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    status, added = await admin.call("POST", f"/api/v1/admin/merchants/{shop.merchant_id}/keys")
    assert status == 201, added
    assert_sealed(await _stored_key(stack, added["key_id"]), added["secret"])
    status, rotated = await admin.call(
        "POST", f"/api/v1/merchants/{shop.merchant_id}/keys/{added['key_id']}/rotate"
    )
    assert status == 201, rotated
    assert_sealed(await _stored_key(stack, rotated["key_id"]), rotated["secret"])

    for key_id, secret in (
        (added["key_id"], added["secret"]),
        (rotated["key_id"], rotated["secret"]),
    ):
        status, _ = await MerchantClient(stack.url, key_id, secret, http).request(
            "GET", "/api/v1/payments?limit=1"
        )
        assert status == 200, "the sealed key still verifies signed requests"
    bad_before = receiver.bad_signatures
    status, paid = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="s1")
    assert status == 201
    await receiver.wait_for(shop.merchant_id, lambda e: e["data"]["id"] == paid["id"])
    assert receiver.bad_signatures == bad_before, "webhooks are signed with the opened secret"


async def test_totp_secrets_are_sealed_pending_and_enrolled(stack: Stack, http) -> None:
    assert stack.pg is not None
    user = await make_user(stack, http, Realm.PLATFORM, None, ["operations"])
    assert user.totp_secret
    row = await stack.pg.fetchrow(
        "SELECT mfa_secret, mfa_pending FROM users WHERE id = $1", user.user_id
    )
    assert_sealed(row["mfa_secret"], user.totp_secret)
    assert row["mfa_pending"] is None

    status, enrolment = await user.call("POST", "/api/v1/auth/mfa/enroll")
    assert status == 200 and enrolment["secret"] in enrolment["provisioning_uri"]
    pending = await stack.pg.fetchval("SELECT mfa_pending FROM users WHERE id = $1", user.user_id)
    assert_sealed(pending, enrolment["secret"])
    assert TOTP_PENDING.open(stack.box, user.user_id, pending) == enrolment["secret"]
    status, _ = await user.call(
        "POST", "/api/v1/auth/mfa/verify", {"code": totp_code(enrolment["secret"])}
    )
    assert status == 200
    enrolled = await stack.pg.fetchval("SELECT mfa_secret FROM users WHERE id = $1", user.user_id)
    assert enrolled == pending, "the sealed value is confirmed as it is"
    assert TOTP.open(stack.box, user.user_id, enrolled) == enrolment["secret"]
    status, session = await user.login(totp=totp_code(enrolment["secret"], 1))
    assert status == 200 and session["mfa"] is True


async def test_signing_keys_are_sealed_and_still_sign(stack: Stack, http) -> None:
    assert stack.pg is not None
    user = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    kid = await rotate_signing_key(stack.pg, stack.box)
    row = await stack.pg.fetchrow(
        "SELECT private_pem, public_pem FROM signing_keys WHERE kid = $1", kid
    )
    assert row["private_pem"].startswith("v1:") and "PRIVATE KEY" not in row["private_pem"]
    assert row["public_pem"].startswith("-----BEGIN PUBLIC KEY"), "public keys stay plain"
    opened = SIGNING_KEY.open(stack.box, kid, row["private_pem"])
    assert opened.startswith("-----BEGIN PRIVATE KEY")
    (newest, *_) = await identity.signing_keys(stack.pg, stack.box, 3600)
    assert (newest.kid, newest.private_pem) == (kid, opened)
    await asyncio.sleep(float(TEST_SETTINGS["JUHE_AUTH__KEY_CACHE_S"]) + 0.2)
    status, session = await user.call(
        "POST", "/api/v1/auth/refresh", {"refresh_token": user.refresh}, token=""
    )
    assert status == 200
    assert jwt.get_unverified_header(session["access_token"])["kid"] == kid
    status, _ = await user.call("GET", "/api/v1/auth/me", token=session["access_token"])
    assert status == 200


async def test_a_customers_email_and_ip_are_sealed_with_the_payment(
    stack: Stack, new_merchant: MerchantFactory
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    email, ip = "someone.private@example.com", "203.0.113.77"
    _, created = await shop.create_payment(
        amount="1.00",
        currency="USD",
        merchant_order_id="pii-1",
        customer={"email": email, "ip": ip},
    )
    await wait_status(shop, created["id"], {"succeeded"})
    row = await stack.pg.fetchrow(
        "SELECT customer_email, customer_ip FROM payments WHERE id = $1", created["id"]
    )
    assert_sealed(row["customer_email"], email)
    assert_sealed(row["customer_ip"], ip)
    box = stack.box
    assert CUSTOMER_EMAIL.open(box, created["id"], row["customer_email"]) == email
    assert CUSTOMER_IP.open(box, created["id"], row["customer_ip"]) == ip


async def _redis_contents(stack: Stack) -> bytes:
    """Every key of the node's prefix with its value, whatever its type, as one blob."""
    assert stack.redis is not None
    redis, parts = stack.redis, []
    async for key in redis.scan_iter(f"{stack.settings.redis.prefix}:*", count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value: object = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "stream":
            value = await redis.xrange(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        else:
            value = b""
        parts.append(key + b" " + repr(value).encode())
    return b"\n".join(parts)


async def test_no_redis_key_holds_a_customers_email_or_ip_in_clear(
    stack: Stack, new_merchant: MerchantFactory
) -> None:
    """The intent is sealed at the gateway, so the hot copy (kept for days), the stream entry
    and the idempotency record carry the customer's e-mail and IP only sealed; the payment row
    gets the same sealed values, and the risk pool still reads them (blocklists)."""
    assert stack.pg is not None and stack.redis is not None
    shop = await new_merchant()
    email = f"private.{secrets.token_hex(4)}@example.com"
    ip = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    status, created = await shop.create_payment(
        idempotency_key=secrets.token_hex(8),
        amount="1.00",
        currency="USD",
        merchant_order_id="pii-" + secrets.token_hex(4),
        customer={"email": email, "ip": ip},
    )
    assert status == 201, created
    hot = await stack.redis.hget(Keys(stack.settings.redis.prefix).payment(created["id"]), "intent")
    intent = msgspec.msgpack.decode(hot, type=PaymentIntent)
    assert CUSTOMER_EMAIL.open(stack.box, created["id"], intent.customer_email or "") == email
    assert CUSTOMER_IP.open(stack.box, created["id"], intent.customer_ip or "") == ip
    for moment in ("at once", "after the payment ended"):
        contents = await _redis_contents(stack)
        assert created["id"].encode() in contents, "the scan saw the payment's keys"
        for secret in (email, ip, email.split("@")[0]):
            assert secret.encode() not in contents, (moment, secret)
        await wait_status(shop, created["id"], {"succeeded"})
    row = await stack.pg.fetchrow(
        "SELECT customer_email, customer_ip FROM payments WHERE id = $1", created["id"]
    )
    assert_sealed(row["customer_email"], email)
    assert CUSTOMER_EMAIL.open(stack.box, created["id"], row["customer_email"]) == email
    assert CUSTOMER_IP.open(stack.box, created["id"], row["customer_ip"]) == ip


async def test_a_blocked_email_is_still_rejected_though_it_travels_sealed(
    stack: Stack, new_merchant: MerchantFactory
) -> None:
    assert stack.redis is not None
    shop = await new_merchant()
    email = f"Fraud.{secrets.token_hex(4)}@example.com"
    await block(stack, Kind.EMAIL, email)
    _, created = await shop.create_payment(
        amount="1.00",
        currency="USD",
        merchant_order_id="pii-" + secrets.token_hex(4),
        customer={"email": email},
    )
    rejected = await wait_status(shop, created["id"], {"rejected"})
    assert rejected["failure_code"] == "blocked_email"
