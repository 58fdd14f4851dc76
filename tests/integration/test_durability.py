"""The create path's durability modes, each against the real services: `database` has the row
before it answers, `replicated` refuses to answer 201 until a replica has the intent."""

from __future__ import annotations

import secrets

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from benchmarks.node import RedisPair
from gateway.app import create_app
from gateway.client import MerchantClient
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def edge_with(stack: Stack, **gateway: object) -> TestServer:
    settings = msgspec.structs.replace(
        stack.settings, gateway=msgspec.structs.replace(stack.settings.gateway, **gateway)
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    return server


async def test_database_mode_has_the_row_before_answering(stack: Stack, merchant) -> None:
    server = await edge_with(stack, durability="database")
    try:
        async with aiohttp.ClientSession() as http:
            client = MerchantClient(
                str(server.make_url("")), merchant.key_id, merchant.secret, http
            )
            status, body = await client.create_payment(
                amount="1.00", currency="USD", merchant_order_id="db-" + secrets.token_hex(4)
            )
        assert status == 201, body
        row = await stack.pg.fetchrow(
            "SELECT status, amount FROM payments WHERE id = $1", body["id"]
        )
        assert row is not None and row["amount"] == 100
    finally:
        await server.close()


async def test_replicated_mode_without_a_replica_is_503_then_replays(
    stack: Stack, merchant
) -> None:
    server = await edge_with(
        stack, durability="replicated", replicated_min_replicas=1, replicated_timeout_ms=20
    )
    try:
        async with aiohttp.ClientSession() as http:
            client = MerchantClient(
                str(server.make_url("")), merchant.key_id, merchant.secret, http
            )
            fields = {
                "amount": "1.00",
                "currency": "USD",
                "merchant_order_id": "rep-" + secrets.token_hex(4),
            }
            key = "rep-" + secrets.token_hex(4)
            status, body = await client.create_payment(idempotency_key=key, **fields)
            assert status == 503 and body["error"]["code"] == "not_replicated"
            # The intent itself was taken: the retry with the same key replays its answer.
            status, replay = await client.create_payment(idempotency_key=key, **fields)
            assert status == 201 and replay["merchant_order_id"] == fields["merchant_order_id"]
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def primary_with_replica():
    pair = RedisPair()
    try:
        replica = await pair.start()
        yield pair.primary_url, replica
        await replica.aclose()
    finally:
        pair.stop()


async def test_replicated_mode_answers_once_a_replica_has_the_intent(
    stack: Stack, merchant, primary_with_replica
) -> None:
    url, replica = primary_with_replica
    settings = msgspec.structs.replace(
        stack.settings,
        redis=msgspec.structs.replace(stack.settings.redis, url=url),
        gateway=msgspec.structs.replace(
            stack.settings.gateway,
            durability="replicated",
            replicated_min_replicas=1,
            replicated_timeout_ms=1000,
        ),
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            client = MerchantClient(
                str(server.make_url("")), merchant.key_id, merchant.secret, http
            )
            status, body = await client.create_payment(
                amount="1.00", currency="USD", merchant_order_id="rep-" + secrets.token_hex(4)
            )
        assert status == 201, body
        # Acknowledged means the replica already holds the intent and its hot copy.
        prefix = stack.settings.redis.prefix
        assert await replica.xlen(f"{prefix}:{{intake:payments}}") == 1
        assert await replica.hget(f"{prefix}:pay:{body['id']}", "status") == b"pending"
    finally:
        await server.close()
